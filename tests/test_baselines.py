"""lightft.baselines: majority class, TF-IDF + logistic regression, frozen-encoder embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightft.architectures import build_encoder
from lightft.baselines import embedding_baseline, encode_texts, majority_baseline, tfidf_baseline

TRAIN = ["a good film", "good acting", "a great film", "great fun",
         "a bad film", "bad acting", "a dull film", "dull fun"]
LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


def test_majority_predicts_the_most_frequent_class_with_its_share():
    result = majority_baseline([2, 2, 1, 0, 2], ["x", "y"])
    assert result.predictions.tolist() == [2, 2]
    assert result.probabilities.tolist() == [[0.2, 0.2, 0.6]] * 2
    assert majority_baseline([0, 1, 1, 0], 3).predictions.tolist() == [0, 0, 0]   # tie: smallest index
    assert majority_baseline([0, 0], 1, num_labels=3).probabilities.shape == (1, 3)
    with pytest.raises(ValueError, match="empty"):
        majority_baseline([], 3)


def test_tfidf_learns_the_sentiment_words():
    result = tfidf_baseline(TRAIN, LABELS, ["good", "dull", "a great script", "bad bad bad"])
    assert result.predictions.tolist() == [1, 0, 1, 0]
    assert result.probabilities.shape == (4, 2)
    assert np.allclose(result.probabilities.sum(axis=1), 1)
    assert result.details["vocabulary"] > 0


def test_tfidf_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        tfidf_baseline(TRAIN, LABELS[:-1], ["x"])
    with pytest.raises(ValueError, match="single class"):
        tfidf_baseline(TRAIN, [0] * 8, ["x"])
    with pytest.raises(TypeError, match="strings"):
        tfidf_baseline(TRAIN, LABELS, "one string")
    with pytest.raises(ValueError, match="empty"):
        tfidf_baseline(TRAIN, LABELS, [])


class _Tokenizer:
    """Word -> id over a fixed vocabulary; pads with 0."""

    vocab = {w: i + 1 for i, w in enumerate(sorted({w for t in TRAIN + ["x"] for w in t.split()}))}

    def __call__(self, texts, truncation, max_length, padding, return_tensors):
        ids = [[self.vocab.get(w, 1) for w in t.split()][:max_length] for t in texts]
        width = max(map(len, ids))
        input_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids > 0).long()}


def test_encode_texts_mean_pools_over_real_tokens_only():
    from transformers import BertConfig

    config = BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        vocab_size=64, max_position_embeddings=16)
    model = build_encoder(config)
    model.train()
    tokenizer = _Tokenizer()
    together = encode_texts(model, ["good", "a great film"], tokenizer=tokenizer, batch_size=2)
    alone = encode_texts(model, ["good"], tokenizer=tokenizer)
    assert together.shape == (2, 32) and together.dtype == np.float32
    # "good" is padded to 3 tokens in the batch; masked mean pooling must ignore the padding
    assert np.allclose(together[0], alone[0], atol=1e-5)
    cls = encode_texts(model, ["good"], tokenizer=tokenizer, pooling="cls")
    assert cls.shape == (1, 32)
    assert model.training   # dropout was off while encoding, and the mode is restored afterwards
    with pytest.raises(ValueError, match="pooling"):
        encode_texts(model, ["good"], tokenizer=tokenizer, pooling="max")


def test_embedding_baseline_on_given_embeddings():
    # two well separated clusters in 3-D stand in for sentence embeddings
    train = np.array([[1, 0, 0]] * 4 + [[0, 1, 0]] * 4, dtype=np.float32) + 0.01 * np.arange(8)[:, None]
    test = np.array([[0.9, 0.1, 0], [0.1, 0.9, 0]], dtype=np.float32)
    result = embedding_baseline(TRAIN, LABELS, ["x", "y"], train_embeddings=train, test_embeddings=test)
    assert result.predictions.tolist() == [1, 0]
    assert result.details["hidden"] == 3
    with pytest.raises(ValueError, match="rows"):
        embedding_baseline(TRAIN, LABELS, ["x"], train_embeddings=train, test_embeddings=test)


def test_a_class_missing_from_training_gets_a_zero_column():
    result = tfidf_baseline(TRAIN, [2 * y for y in LABELS], ["good", "dull"])   # classes 0 and 2, no 1
    assert result.probabilities.shape == (2, 3) and (result.probabilities[:, 1] == 0).all()
    assert result.predictions.tolist() == [2, 0] and result.seconds >= 0
    with pytest.raises(ValueError, match="num_labels"):
        majority_baseline([0, 2], 1, num_labels=2)
