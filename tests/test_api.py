"""The package's shape: the public API table in README.md is ``lightft.__all__``; no import circle; no
private name imported across modules; no function longer than 80 lines; no hand-copied ``__all__``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lightft

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lightft"
MODULES = {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.glob("*.py"))}


def _api_table() -> list[tuple[str, str]]:
    """(name, module) rows of README.md's table under '## The lightft API'."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The `lightft` API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \| `lightft\.([a-z_]+)` \|", section, flags=re.M)


def test_the_readme_api_table_is_the_export_list():
    rows = _api_table()
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a name is listed twice in the README's API table"
    assert sorted(names) == lightft.__all__, (sorted(set(lightft.__all__) - set(names)),
                                             sorted(set(names) - set(lightft.__all__)))
    for name, module in rows:  # each row names the module that defines it, and the name is there
        assert getattr(__import__(f"lightft.{module}", fromlist=[name]), name) is getattr(lightft, name), name


def test_the_exported_surface_is_small():
    assert len(lightft.__all__) <= 60, f"{len(lightft.__all__)} exported names: keep the surface small"


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(lightft submodule, names) for every ``from lightft.X import ...`` anywhere in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lightft."):
            found.append((node.module.split(".")[1], [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and node.module == "lightft":
            found.extend((a.name, []) for a in node.names if a.name in MODULES)
    return found


def test_no_import_circle_between_modules():
    graph = {name: {m for m, _ in _imports(tree) if m in MODULES and m != name} for name, tree in MODULES.items()}
    graph.pop("__init__", None)

    def visit(node, path):
        assert node not in path, f"import circle: {' -> '.join(path[path.index(node):] + [node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, path + [node])

    for start in graph:
        visit(start, [])


def test_no_private_name_is_imported_across_modules():
    offenders = [f"{name} imports {module}.{n}" for name, tree in MODULES.items()
                 for module, names in _imports(tree) for n in names if n.startswith("_")]
    assert not offenders, offenders


def test_no_function_is_longer_than_80_lines():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines" for name, tree in MODULES.items()
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 80]
    assert not long, long


def test_no_module_keeps_a_hand_copied_all_list():
    copied = [name for name, tree in MODULES.items() if name != "__init__" for node in tree.body
              if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)]
    assert not copied, f"modules with their own __all__ (the export list lives in lightft/__init__.py): {copied}"


LLM_MODULES = {"llm", "lora"}                       # the LLM part (issue 14), counted on top of the cap
LLM_CLI = {"_llm_commands", "_sft", "_generate"}     # its subcommands in lightft/__main__.py
LINE_CAP = 4500


def test_the_package_stays_within_its_line_cap():
    """The pre-LLM package is at most LINE_CAP lines (wc -l), so a reader can hold it in their head."""
    total = 0
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem in LLM_MODULES:
            continue
        total += len(path.read_text(encoding="utf-8").splitlines())
    llm_cli = sum(node.end_lineno - node.lineno + 1 for node in MODULES["__main__"].body
                  if isinstance(node, ast.FunctionDef) and node.name in LLM_CLI)
    assert total - llm_cli <= LINE_CAP, f"lightft/ is {total - llm_cli} lines without the LLM part; the cap is {LINE_CAP}"
