"""lightft.sentiment: batch scoring, int8 dynamic quantization, latency/throughput."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import lightft
from lightft.sentiment import ScoringSpeed, SentimentScorer, model_size_bytes, time_scoring

TEXTS = ["a gripping, funny film.", "dull.", "the plot is predictable, yet the performances are worth it.",
         "not a bad movie at all.", "i wanted to like it"]


@pytest.fixture(scope="module")
def tokenizer():
    return lightft.load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    return BertForSequenceClassification(config).eval()


def test_score_returns_labels_and_probabilities(model, tokenizer):
    scorer = SentimentScorer(model, tokenizer, batch_size=2)
    out = scorer.score(TEXTS)
    assert out.probabilities.shape == (5, 2)
    np.testing.assert_allclose(out.probabilities.sum(1), 1, atol=1e-6)
    assert out.indices == out.probabilities.argmax(1).tolist()
    assert out.labels == [["negative", "positive"][i] for i in out.indices]
    assert scorer.labels == ["negative", "positive"]
    # batching and padding do not change the answer
    one = np.concatenate([scorer.score([t]).probabilities for t in TEXTS])
    np.testing.assert_allclose(one, out.probabilities, atol=1e-5)
    assert scorer("dull.").probabilities.shape == (1, 2)


def test_score_validates_input(model, tokenizer):
    scorer = SentimentScorer(model, tokenizer)
    with pytest.raises(ValueError, match="empty"):
        scorer.score([])
    with pytest.raises(TypeError):
        scorer.score([1, 2])
    with pytest.raises(ValueError, match="batch_size"):
        SentimentScorer(model, tokenizer, batch_size=0)
    with pytest.raises(TypeError):
        SentimentScorer("not a model", tokenizer)


def test_quantized_copy_is_int8_close_and_smaller(model, tokenizer):
    scorer = SentimentScorer(model, tokenizer)
    int8 = scorer.quantized()
    assert int8.precision == "int8"
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    layers = [m for m in int8.model.modules() if isinstance(m, (torch.nn.Linear, DynamicQuantizedLinear))]
    assert layers and all(type(m) is DynamicQuantizedLinear for m in layers)
    assert any(isinstance(m, torch.nn.Linear) for m in scorer.model.modules()), "the original must stay fp32"
    np.testing.assert_allclose(int8.score(TEXTS).probabilities, scorer.score(TEXTS).probabilities, atol=0.05)
    # layer weights shrink 4x; the (fp32) embedding table dominates this tiny model, so compare layers only
    fp32_layers = sum(p.numel() * 4 for n, p in model.named_parameters() if "encoder" in n and n.endswith("weight") and p.dim() == 2)
    assert model_size_bytes(scorer.model) - model_size_bytes(int8.model) > 0.5 * fp32_layers


def test_time_scoring_measures_latency_and_throughput(model, tokenizer):
    speed = time_scoring(SentimentScorer(model, tokenizer, batch_size=4), TEXTS * 4, single_repeats=3)
    assert isinstance(speed, ScoringSpeed)
    assert speed.single_ms > 0 and speed.batch_examples_per_s > 0 and speed.batch_size == 4
    assert set(speed.as_dict()) >= {"precision", "one sentence (ms)", "batch throughput (sentences/s)"}
    with pytest.raises(TypeError):
        time_scoring(model, TEXTS)


def test_from_pretrained_reloads_a_saved_model(model, tokenizer, tmp_path):
    (tmp_path / "best").mkdir()
    model.save_pretrained(tmp_path / "best")
    tokenizer.save_pretrained(tmp_path / "best")
    reloaded = SentimentScorer.from_pretrained(tmp_path)
    np.testing.assert_allclose(reloaded.score(TEXTS).probabilities, SentimentScorer(model, tokenizer).score(TEXTS).probabilities, atol=1e-6)
    with pytest.raises(FileNotFoundError):
        SentimentScorer.from_pretrained(tmp_path / "nothing")


def test_a_model_left_in_autocast_by_a_trainer_is_scored_in_fp32(tokenizer):
    from types import MethodType

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    model = BertForSequenceClassification(config)
    # what accelerate does to a model trained with mixed precision: forward wrapped in autocast
    model.forward = MethodType(torch.autocast("cpu", dtype=torch.bfloat16)(type(model).forward), model)
    batch = tokenizer(["a film"], return_tensors="pt")
    assert model(**batch).logits.dtype == torch.bfloat16
    scorer = SentimentScorer(model, tokenizer)
    assert scorer.model(**batch).logits.dtype == torch.float32
    assert scorer.quantized().score(["a film", "dull"]).probabilities.shape == (2, 2)   # int8 needs fp32 input
