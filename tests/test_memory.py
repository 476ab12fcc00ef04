"""lightft.memory (footprint, activation memory) and lightft.models' parameter counting, checked on a
tiny BERT whose parameter count is derived by hand from the shape of every weight matrix."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import lightft
from lightft.memory import (
    MemoryFootprint,
    activation_bytes,
    bert_activation_estimate,
    bytes_per_element,
    footprint,
    format_bytes,
)

V, H, LAYERS, HEADS, FFN, POS, TYPES, CLASSES = 100, 8, 1, 2, 16, 32, 2, 3


def tiny_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=POS, type_vocab_size=TYPES, num_labels=CLASSES,
    )
    settings.update(overrides)
    return BertConfig(**settings)


def tiny_model(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(**overrides))


def linear(n_in: int, n_out: int) -> int:
    """A dense layer: an n_out x n_in weight matrix and a bias of n_out."""
    return n_in * n_out + n_out


def layer_norm(n: int) -> int:
    return 2 * n  # gain and bias


# Hand-derived parameter counts of the tiny BERT, one term per weight matrix.
EMBEDDINGS = V * H + POS * H + TYPES * H + layer_norm(H)  # word, position, token type, LayerNorm
LAYER = (
    3 * linear(H, H)      # query, key, value
    + linear(H, H)        # attention output projection
    + layer_norm(H)
    + linear(H, FFN)      # FFN up
    + linear(FFN, H)      # FFN down
    + layer_norm(H)
)
POOLER = linear(H, H)
HEAD = linear(H, CLASSES)
TOTAL = EMBEDDINGS + LAYERS * LAYER + POOLER + HEAD


def batch(b: int, s: int, labels: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(b * 1000 + s)
    out = {
        "input_ids": torch.randint(0, V, (b, s), generator=g),
        "attention_mask": torch.ones(b, s, dtype=torch.long),
        "token_type_ids": torch.zeros(b, s, dtype=torch.long),
    }
    if labels:
        out["labels"] = torch.randint(0, CLASSES, (b,), generator=g)
    return out


# --- parameter counting (lightft.models) ---------------------------------------------------------

def test_hand_count_is_what_we_think():
    # 800 + 256 + 16 + 16 = 1088 embeddings; 4 * 72 + 16 + 144 + 136 + 16 = 600 per layer.
    assert (EMBEDDINGS, LAYER, POOLER, HEAD, TOTAL) == (1088, 600, 72, 27, 1787)


def test_count_parameters_matches_hand_count():
    model = tiny_model()
    assert lightft.count_parameters(model) == TOTAL
    assert lightft.count_parameters(model, trainable_only=True) == TOTAL
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("classifier."))
    assert lightft.count_parameters(model, trainable_only=True) == HEAD
    assert lightft.count_parameters(model) == TOTAL


def test_parameter_breakdown_matches_hand_count():
    model = tiny_model(num_hidden_layers=2)
    breakdown = lightft.parameter_breakdown(model)
    assert list(breakdown) == ["embeddings", "layer 0", "layer 1", "pooler", "head"]
    assert dict(breakdown) == {
        "embeddings": EMBEDDINGS, "layer 0": LAYER, "layer 1": LAYER, "pooler": POOLER, "head": HEAD,
    }
    model.bert.embeddings.requires_grad_(False)
    assert "embeddings" not in lightft.parameter_breakdown(model, trainable_only=True)


def test_count_parameters_rejects_non_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lightft.count_parameters({"weight": torch.zeros(3)})


# --- footprint -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "dtype, size",
    [("float32", 4), ("fp32", 4), ("FP16", 2), ("float16", 2), ("bf16", 2), ("bfloat16", 2),
     ("int8", 1), ("float64", 8), (torch.float32, 4), (torch.bfloat16, 2), (torch.int8, 1),
     ("torch.float16", 2)],
)
def test_bytes_per_element(dtype, size):
    assert bytes_per_element(dtype) == size
    assert footprint(tiny_model(), dtype).weights == TOTAL * size


def test_inference_footprint_is_weights_only():
    fp = footprint(tiny_model())
    assert isinstance(fp, MemoryFootprint)
    assert (fp.parameters, fp.weights, fp.gradients, fp.optimizer_state, fp.total) == (TOTAL, 4 * TOTAL, 0, 0, 4 * TOTAL)
    assert fp.as_dict()["total"] == 4 * TOTAL
    assert "1,787 parameters" in str(fp) and "total" in str(fp)


@pytest.mark.parametrize(
    "optimizer, per_parameter", [("adamw", 16), ("adam", 16), ("sgd_momentum", 12), ("SGD-momentum", 12), ("sgd", 8), (None, 8)]
)
def test_training_footprint_fp32(optimizer, per_parameter):
    fp = footprint(tiny_model(), training=True, optimizer=optimizer)
    assert fp.gradients == 4 * TOTAL
    assert fp.total == per_parameter * TOTAL
    assert fp.bytes_per_parameter == per_parameter


def test_mixed_precision_is_16_bytes_per_parameter():
    fp = footprint(tiny_model(), "fp16", training=True, mixed_precision=True)
    assert (fp.weights, fp.gradients, fp.master_weights, fp.optimizer_state) == (2 * TOTAL, 2 * TOTAL, 4 * TOTAL, 8 * TOTAL)
    assert fp.total == 16 * TOTAL
    # pure bf16 training: everything in 2 bytes, as PyTorch keeps it
    assert footprint(tiny_model(), "bf16", training=True).total == 8 * TOTAL


def test_freezing_removes_gradients_and_optimizer_state():
    model = tiny_model()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("classifier."))
    fp = footprint(model, training=True)
    assert fp.trainable_parameters == HEAD
    assert fp.total == 4 * TOTAL + (4 + 8) * HEAD
    everything = footprint(model, training=True, trainable_only=False)
    assert everything.total == 16 * TOTAL
    # frozen parameters need no master copy in mixed precision either
    mixed = footprint(model, "bf16", training=True, mixed_precision=True)
    assert mixed.total == 2 * TOTAL + (2 + 4 + 8) * HEAD


def test_footprint_matches_real_gradients_and_adamw_state():
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(**batch(2, 5)).loss.backward()
    optimizer.step()
    fp = footprint(model, training=True, optimizer="adamw")
    grads = sum(p.grad.nbytes for p in model.parameters())
    moments = sum(s["exp_avg"].nbytes + s["exp_avg_sq"].nbytes for s in optimizer.state.values())
    steps = sum(s["step"].nbytes for s in optimizer.state.values())  # the ignored step counters
    assert fp.gradients == grads
    assert fp.optimizer_state == moments
    assert steps == 4 * len(list(model.parameters()))


def test_footprint_rejects_bad_inputs():
    model = tiny_model()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        footprint("bert-base-uncased")
    with pytest.raises(ValueError, match="dtype must be one of .*'float32'.*got 'float8'"):
        footprint(model, "float8")
    with pytest.raises(TypeError, match="dtype must be"):
        footprint(model, 32)
    with pytest.raises(ValueError, match="optimizer must be one of 'adamw'.*got 'lion'"):
        footprint(model, training=True, optimizer="lion")
    with pytest.raises(ValueError, match="mixed_precision=True needs a 16-bit dtype"):
        footprint(model, "float32", training=True, mixed_precision=True)
    with pytest.raises(ValueError, match="int8 weights cannot be trained"):
        footprint(model, "int8", training=True)
    with pytest.raises(TypeError, match="training must be True or False"):
        footprint(model, training="yes")


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20) == "3.0 MiB"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"
    with pytest.raises(ValueError):
        format_bytes(-1)


# --- activations ---------------------------------------------------------------------------------

def test_activation_bytes_positive_and_linear_in_batch_size():
    model = tiny_model()
    sizes = {b: activation_bytes(model, batch(b, 12, labels=False)) for b in (2, 4, 6, 8)}
    assert all(v > 0 for v in sizes.values())
    steps = {sizes[4] - sizes[2], sizes[6] - sizes[4], sizes[8] - sizes[6]}
    assert len(steps) == 1, f"activation memory should grow by the same amount per 2 examples: {sizes}"
    assert sizes[8] == 4 * sizes[2]  # without labels every saved tensor has a batch dimension


@pytest.mark.parametrize("layers, heads, hidden, ffn", [(1, 2, 8, 16), (2, 4, 16, 24)])
@pytest.mark.parametrize("b, s", [(3, 10), (5, 7), (1, 31)])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_analytic_estimate_matches_measurement_on_cpu(layers, heads, hidden, ffn, b, s, attn):
    overrides = dict(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=hidden,
                     intermediate_size=ffn, attn_implementation=attn)
    model = tiny_model(**overrides)
    data = batch(b, s)
    data["attention_mask"][0, s // 2:] = 0  # padding must not change what is saved
    assert activation_bytes(model, data) == bert_activation_estimate(tiny_config(**overrides), b, s)
    no_labels = batch(b, s, labels=False)
    assert activation_bytes(model, no_labels) == bert_activation_estimate(model.config, b, s, with_labels=False)


def test_estimate_grows_quadratically_through_attention_only():
    config = tiny_config()
    # second difference in s: only the b*a*s^2*(2E+M) term of each layer survives
    f = [bert_activation_estimate(config, 1, s) for s in (10, 11, 12)]
    assert f[2] - 2 * f[1] + f[0] == LAYERS * HEADS * 2 * (2 * 4 + 4)
    # Korthikanti et al.: 34 bsh + 5 a s^2 b per layer for 16-bit activations, bool masks, I = 4h
    big = BertConfig(hidden_size=64, intermediate_size=256, num_attention_heads=4, num_hidden_layers=3)
    two = bert_activation_estimate(big, 2, 16, dtype="fp16", mask_bytes=1)
    one = bert_activation_estimate(BertConfig(hidden_size=64, intermediate_size=256, num_attention_heads=4,
                                              num_hidden_layers=2), 2, 16, dtype="fp16", mask_bytes=1)
    b, s, h, a = 2, 16, 64, 4
    assert two - one == 34 * s * b * h + 5 * a * s * s * b + 16 * b * s  # + LayerNorm statistics


def test_frozen_model_saves_nothing_and_mode_is_restored():
    model = tiny_model()
    model.eval()
    assert activation_bytes(model, batch(2, 6)) > activation_bytes(model, batch(2, 6), train=False)
    assert not model.training and not any(m.training for m in model.modules())
    model.requires_grad_(False)
    assert activation_bytes(model, batch(2, 6)) == 0
    # training only the head keeps only the head's inputs
    model.classifier.requires_grad_(True)
    head_only = activation_bytes(model, batch(2, 6, labels=False))
    assert 0 < head_only < activation_bytes(tiny_model(), batch(2, 6, labels=False)) / 10


def test_activation_bytes_accepts_a_tensor():
    model = tiny_model()
    assert activation_bytes(model, batch(2, 6)["input_ids"]) > 0


def test_activation_bytes_rejects_bad_inputs():
    model = tiny_model()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        activation_bytes(lambda x: x, batch(2, 6))
    with pytest.raises(TypeError, match="mapping of input tensors"):
        activation_bytes(model, [[1, 2, 3]])
    with pytest.raises(ValueError, match="batch is empty"):
        activation_bytes(model, {})
    with pytest.raises(TypeError, match=r"batch\['input_ids'\].*return_tensors='pt'"):
        activation_bytes(model, {"input_ids": [[1, 2, 3]]})
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1"):
        bert_activation_estimate(tiny_config(), 2, 0)
    with pytest.raises(ValueError, match="config.hidden_size"):
        bert_activation_estimate(object(), 2, 8)
