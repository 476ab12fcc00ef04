"""Prepare a scratch copy of the book whose notebooks nbmake executes in place, then render it.

    python scripts/executed_book.py DEST

copies _config.yml, _toc.yml and book/ into DEST, keeping each chapter's .ipynb (not its paired
.md, so the toc resolves to the notebook nbmake will fill with outputs) and every other file, and
rewrites the configuration so that the build renders those outputs instead of executing again:
`execute_notebooks: "off"`, and book/*.ipynb no longer excluded. make test then runs
`pytest --nbmake --overwrite DEST/book` and `jupyter-book build -W -n --keep-going DEST`.
Each notebook is executed exactly once; the committed files are never touched.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main(dest: str) -> None:
    out = Path(dest).resolve()
    if out == ROOT or ROOT.is_relative_to(out):
        sys.exit(f"refusing to write the scratch book over the repository ({out})")
    if out.exists():
        shutil.rmtree(out)
    (out / "book").mkdir(parents=True)
    shutil.copy2(ROOT / "_toc.yml", out / "_toc.yml")
    for src in (ROOT / "book").rglob("*"):
        if src.is_dir() or ".ipynb_checkpoints" in src.parts or "_build" in src.parts:
            continue
        if src.suffix == ".md" and src.with_suffix(".ipynb").exists():
            continue  # the paired notebook stands in for it
        target = out / src.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"
    # local Sphinx extensions are found relative to the book's root: point the copy at ours
    extensions = config.get("sphinx", {}).get("local_extensions") or {}
    for name, path in extensions.items():
        extensions[name] = str((ROOT / path).resolve())
    config["exclude_patterns"] = [p for p in config["exclude_patterns"] if p != "book/*.ipynb"]
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    notebooks = sorted(p.name for p in (out / "book").glob("*.ipynb"))
    print(f"scratch book in {out}: {len(notebooks)} notebooks to execute: {', '.join(notebooks)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
