"""The book's sources: every chapter pair in sync, notebooks committed without outputs, the toc complete,
and each notebook opening with the hidden Colab install cell and one parameters cell."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
PAIRED = sorted(p for p in BOOK.glob("*.md") if "formats: ipynb,md:myst" in p.read_text(encoding="utf-8"))
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def _comparable(cell) -> tuple:
    meta = {k: v for k, v in cell.get("metadata", {}).items() if k not in {"execution", "collapsed", "scrolled"}}
    return cell["cell_type"], cell["source"].strip(), json.dumps(meta, sort_keys=True)


def test_there_are_chapters():
    assert PAIRED, "no paired MyST notebooks in book/"


@pytest.mark.parametrize("md", PAIRED, ids=lambda p: p.name)
def test_pair_in_sync(md: Path):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{md.name} has no paired {ipynb.name}; run: make pairs"
    from_md = jupytext.read(md)
    committed = nbformat.read(ipynb, as_version=4)
    a = [_comparable(c) for c in from_md.cells]
    b = [_comparable(c) for c in committed.cells]
    assert a == b, f"{ipynb.name} differs from {md.name}; run: make pairs"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(ipynb: Path):
    nb = nbformat.read(ipynb, as_version=4)
    assert ipynb.with_suffix(".md").exists(), f"{ipynb.name} has no paired .md source"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{ipynb.name} cell {i} has outputs; strip them (make pairs)"
            assert cell.execution_count is None, f"{ipynb.name} cell {i} has an execution count"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_hidden_colab_install_and_has_parameters(ipynb: Path):
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "remove-cell" in first.metadata.get("tags", []), "first code cell must be hidden (remove-cell)"
    assert "google.colab" in first.source and "pip" in first.source and "lightft" in first.source
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{ipynb.name}: expected one cell tagged 'parameters', found {len(params)}"


def test_toc_lists_every_chapter_and_only_existing_files():
    listed = _toc_files()
    for entry in listed:
        assert (ROOT / f"{entry}.md").exists() or (ROOT / f"{entry}.ipynb").exists(), f"toc entry {entry} has no file"
    sources = {f"book/{p.stem}" for p in BOOK.glob("*.md")}
    missing = sources - set(listed)
    assert not missing, f"chapters not in _toc.yml: {sorted(missing)}"


def test_exercises_import_lightft():
    for md in PAIRED:
        text = md.read_text(encoding="utf-8")
        if md.stem in {"about"}:
            continue
        assert "## Exercises" in text, f"{md.name} has no '## Exercises' section"
        exercises = text.split("## Exercises", 1)[1]
        assert "lightft" in exercises, f"{md.name}: exercises must use lightft"


# Chapters whose parameters cell has nothing to size (about: only a display switch).
UNSIZED = {"about"}


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_budget_is_read_in_the_parameters_cell_only_and_named_on_the_page(ipynb: Path):
    """Issue 12: sizes come from lightft.sized(book=..., smoke=...) in the parameters cell; nothing else
    branches on the budget; each page shows which budget and hardware produced its numbers."""
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    if ipynb.stem not in UNSIZED:
        assert "lightft.sized(" in params.source, f"{ipynb.name}: the parameters cell must size with lightft.sized"
    for i, cell in enumerate(code):
        if cell is params:
            continue
        reads_env = re.search(r"environ(\.get)?\s*[\[(]\s*['\"]LIGHTFT_BUDGET", cell.source)
        assert not reads_env and "sized(" not in cell.source, (
            f"{ipynb.name} code cell {i}: the budget may only be read in the parameters cell")
        assert "budget() ==" not in cell.source and "budget() !=" not in cell.source, (
            f"{ipynb.name} code cell {i} branches on the budget: same cells and code paths at both budgets")
    assert any("build_note()" in c.source for c in code), f"{ipynb.name} never shows lightft.build_note()"
