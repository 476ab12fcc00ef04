"""Fine-tuning learns, and the saved best checkpoint is the epoch with the highest validation score.

On a tiny BERT built from a config (2 layers, width 64, as LLMs-from-scratch's tests use a tiny GPT) and a
separable toy set the test writes itself: seconds on any CPU, no pretrained weights needed.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertConfig, BertForSequenceClassification

import lightft
from lightft.train import finetune, predict

POSITIVE = ["good", "great", "wonderful", "superb", "lovely", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "dreadful", "boring", "horrible"]
FILLER = ["the", "film", "was", "a", "story", "with", "actors", "and", "music", "plot", "really", "quite"]


def toy_split(n: int, seed: int) -> Dataset:
    """``n`` sentences of filler words with one sentiment word each; label 1 for a positive word.

    Balanced only roughly (a random label per sentence), so that the majority class is a real baseline.
    """
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.random() < 0.6)  # 60 % positive: the majority class scores about 0.6
        words = rng.sample(FILLER, 5)
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


@pytest.fixture(scope="module")
def toy() -> DatasetDict:
    return DatasetDict(train=toy_split(128, 0), validation=toy_split(48, 1), test=toy_split(96, 2))


@pytest.fixture(scope="module")
def tokenizer():
    return lightft.load_tokenizer("minilm-l6")   # tokenizer files only: no weights are read


def tiny_bert(tokenizer, seed: int = 0) -> BertForSequenceClassification:
    import torch

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=64,
                        num_labels=2, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    return BertForSequenceClassification(config)


def test_finetuning_learns_a_separable_toy_set(toy, tokenizer, tmp_path):
    result = finetune(tiny_bert(tokenizer), toy, tokenizer=tokenizer, output_dir=tmp_path, max_length=16,
                      batch_size=16, epochs=6, learning_rate=3e-3, warmup=0.0, precision="fp32", quiet=True)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) >= 4
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert last < 0.5 * first, f"training loss did not fall: {losses}"
    majority = max(np.mean(toy["test"]["label"]), 1 - np.mean(toy["test"]["label"]))
    assert result.metrics["accuracy"] > majority + 0.15, (result.metrics, majority)
    # the saved model predicts what the returned one scored
    saved = predict(result.output_dir + "/best", toy["test"]["text"], max_length=16)
    assert np.mean(np.array(saved.indices) == np.array(toy["test"]["label"])) == pytest.approx(
        result.metrics["accuracy"], abs=1e-9)


def test_the_saved_best_checkpoint_is_the_epoch_with_the_highest_validation_score(toy, tokenizer, tmp_path):
    # a learning rate that first learns and then, without decay to help, wobbles: the best epoch need not be the last
    result = finetune(tiny_bert(tokenizer, seed=3), toy, tokenizer=tokenizer, output_dir=tmp_path, max_length=16,
                      batch_size=16, epochs=5, learning_rate=2e-3, warmup=0.0, precision="fp32", quiet=True)
    per_epoch = [(h["epoch"], h["eval_accuracy"]) for h in result.history if "eval_accuracy" in h]
    assert len(per_epoch) == 5
    best_score = max(score for _, score in per_epoch)
    first_best_epoch = next(epoch for epoch, score in per_epoch if score == best_score)  # ties keep the earliest
    assert result.best_epoch == pytest.approx(first_best_epoch)
    assert result.validation_metrics["accuracy"] == pytest.approx(best_score, abs=1e-9)
    record = json.loads((tmp_path / "best" / "best.json").read_text())
    assert record["eval_accuracy"] == pytest.approx(best_score) and record["epoch"] == pytest.approx(first_best_epoch)
    # the folder on disk is that epoch's model: it scores the best validation accuracy again
    saved = predict(tmp_path / "best", toy["validation"]["text"], max_length=16)
    accuracy = np.mean(np.array(saved.indices) == np.array(toy["validation"]["label"]))
    assert accuracy == pytest.approx(best_score, abs=1e-9)
