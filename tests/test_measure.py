"""lightft.measure: FLOP counts by hand, batches from real text, throughput loops that restore the model."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import lightft
from lightft import measure

CONFIG = dict(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=64)


@pytest.fixture(scope="module")
def tokenizer():
    return lightft.load_tokenizer("minilm-l6")


def tiny(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(**CONFIG, num_labels=2))


TEXTS = ["a fine film", "dull", "the plot is thin but the acting is wonderful and warm", "ok", "bad bad bad movie",
         "i laughed", "not my thing at all, sadly", "great"]
LABELS = [1, 0, 1, 1, 0, 1, 0, 1]


def test_flops_per_token_by_hand():
    model = tiny()
    h, ffn, layers, vocab, positions = 16, 32, 2, 30522, 64
    embeddings = vocab * h + positions * h + 2 * h  # word, position, token-type tables
    assert measure.non_embedding_parameters(model) == lightft.count_parameters(model) - embeddings
    per_layer = 4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 2 * 2 * h  # attention, FFN, 2 LayerNorms
    head = (h * h + h) + (h * 2 + 2) + 2 * h  # pooler, classifier, embedding LayerNorm
    assert measure.non_embedding_parameters(model) == layers * per_layer + head
    n = layers * per_layer + head
    assert measure.training_flops_per_token(model, 10) == 6 * n + 12 * layers * 10 * h
    assert measure.model_flops_utilisation(100.0, 1e6, 1e9) == pytest.approx(0.1)
    with pytest.raises(TypeError, match="transformers or peft model"):
        measure.non_embedding_parameters(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="peak_flops"):
        measure.model_flops_utilisation(100.0, 1e6, 0.0)


def test_peak_matmul_flops_and_bad_precision():
    assert measure.peak_matmul_flops("fp32", size=128, repeats=1) > 1e6
    with pytest.raises(ValueError, match="GPU technique"):
        measure.peak_matmul_flops("fp16", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of .fp32., .bf16., .fp16."):
        measure.peak_matmul_flops("int4")


def test_text_batches_padding_grouping_and_truncation(tokenizer):
    fixed = measure.text_batches(tokenizer, TEXTS, LABELS, batch_size=3, max_length=12, padding="max_length")
    assert [b["input_ids"].shape for b in fixed] == [(3, 12), (3, 12), (2, 12)]
    assert fixed[0]["labels"].tolist() == [1, 0, 1]
    dynamic = measure.text_batches(tokenizer, TEXTS, LABELS, batch_size=3, max_length=12)
    lengths = [len(tokenizer(t, truncation=True, max_length=12)["input_ids"]) for t in TEXTS]
    assert [b["input_ids"].shape[1] for b in dynamic] == [max(lengths[0:3]), max(lengths[3:6]), max(lengths[6:8])]
    assert sum(int(b["attention_mask"].sum()) for b in dynamic) == sum(lengths)
    grouped = measure.text_batches(tokenizer, TEXTS, LABELS, batch_size=4, max_length=12, group_by_length=True)
    widths = sorted(b["input_ids"].shape[1] for b in grouped)
    assert widths == [sorted(lengths)[3], sorted(lengths)[7]]  # shortest four together, longest four together
    head = measure.text_batches(tokenizer, [TEXTS[2]], max_length=5)[0]["input_ids"][0].tolist()
    tail = measure.text_batches(tokenizer, [TEXTS[2]], max_length=5, truncation_side="left")[0]["input_ids"][0].tolist()
    assert tokenizer.convert_ids_to_tokens(head[1:4]) == ["the", "plot", "is"]
    assert tokenizer.convert_ids_to_tokens(tail[-4:-1]) == ["wonderful", "and", "warm"]
    assert tokenizer.truncation_side == "right"  # restored
    with pytest.raises(ValueError, match="padding"):
        measure.text_batches(tokenizer, TEXTS, padding="longest")
    with pytest.raises(TypeError, match="strings"):
        measure.text_batches(tokenizer, "one string")


def test_measure_training_counts_and_restores_weights(tokenizer):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = measure.text_batches(tokenizer, TEXTS, LABELS, batch_size=4, max_length=16)
    result = measure.measure_training(model, batches, steps=3, warmup=1, accumulation_steps=2, peak_flops=1e9)
    assert result.examples == 3 * 2 * 4 and result.steps == 3
    real = sum(int(b["attention_mask"].sum()) for b in batches)  # 6 micro-batches cycle over 2 batches
    assert result.tokens_per_s * result.seconds == pytest.approx(3 * real)
    assert result.padded_tokens_per_s >= result.tokens_per_s > 0 and result.peak_memory_bytes > 0
    assert result.mfu == pytest.approx(result.flops_per_s / 1e9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="labels"):
        measure.measure_training(model, measure.text_batches(tokenizer, TEXTS, batch_size=4))
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="no trainable"):
        measure.measure_training(model, batches)


def test_measure_inference_and_batch_accuracy(tokenizer):
    model = tiny()
    batches = measure.text_batches(tokenizer, TEXTS, LABELS, batch_size=3)
    result = measure.measure_inference(model, batches)
    assert result.examples == len(TEXTS) and result.mode == "inference" and model.training
    accuracy, predictions = measure.batch_accuracy(model, batches)
    model.eval()
    with torch.no_grad():
        expected = torch.cat([model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1)
                              for b in batches])
    assert predictions.tolist() == expected.tolist()
    assert accuracy == pytest.approx(sum(int(p == y) for p, y in zip(expected.tolist(), LABELS)) / len(LABELS))
