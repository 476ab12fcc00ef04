"""The book's sources: every chapter pair in sync, notebooks committed without outputs, the toc complete,
and each notebook opening with the hidden Colab install cell and one parameters cell."""

from __future__ import annotations

import ast
import contextlib
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


# Notebooks import, never re-implement (issue 13): a chapter calls the package's function instead of
# defining its own under the package's name.
_DEFINITION = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)|^[ \t]*(\w+)[ \t]*=[ \t]*lambda\b", re.M)

# The allow-list: a chapter may define its own version of a package name only to teach it, written from
# scratch, labelled "from scratch" in the chapter's prose and checked in a cell against the package's
# function. Each entry is (chapter stem, name) -> the package function it is compared against, e.g.
# ("attention", "scaled_dot_product_attention"): "lightft.scaled_dot_product_attention". No chapter needs
# one today: attention.md's from-scratch formula is `attention_in_three_lines`, bert.md's T^2 KL is
# inline (both compared against the package in their cells).
TEACHING_VERSIONS: dict[tuple[str, str], str] = {}


def _exported_names() -> set[str]:
    """``lightft.__all__`` and every public function or class any lightft module defines (read from the
    source: no torch). A notebook must not define its own under one of these names."""
    import lightft

    names = set(lightft.__all__)
    for module in sorted((ROOT / "lightft").glob("*.py")):
        for node in ast.parse(module.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                names.add(node.name)
    return names


def _code_definitions(md: Path) -> list[str]:
    cells = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
    return [m.group(1) or m.group(2) for c in cells for m in _DEFINITION.finditer(c.source)]


def test_notebooks_do_not_redefine_what_the_package_exports():
    exported = _exported_names()
    assert {"scaled_dot_product_attention", "finetune", "apply_lora", "embed"} <= exported
    found = [f"{md.name}: {name}" for md in sorted(BOOK.glob("*.md")) for name in _code_definitions(md)
             if name in exported and (md.stem, name) not in TEACHING_VERSIONS]
    assert not found, (f"chapters define functions or classes the package exports: {found}; import and call "
                       "lightft's instead (or, for a labelled from-scratch teaching version, add it to "
                       "TEACHING_VERSIONS)")


def test_teaching_versions_are_defined_labelled_and_compared():
    for (chapter, name), package_function in TEACHING_VERSIONS.items():
        text = (BOOK / f"{chapter}.md").read_text(encoding="utf-8")
        assert name in _code_definitions(BOOK / f"{chapter}.md"), f"stale entry {(chapter, name)}: remove it"
        assert "from scratch" in text and package_function in text, (
            f"{chapter}.md must label its {name} as the from-scratch version and compare it with {package_function}")
