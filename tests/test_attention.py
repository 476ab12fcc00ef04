"""lightft.attention: the hand-written formula against PyTorch's kernel, a hand-computed example and a
real layer of the embedded encoder; masks; multi-head attention; the measurements; every bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lightft
from lightft.attention import (
    MultiHeadSelfAttention,
    attention_cost,
    capture_attention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    scaling_statistics,
)


def _qkv(*lead, l_q=5, l_k=7, d_k=8, d_v=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, l_q, d_k, generator=g, dtype=dtype),
            torch.randn(*lead, l_k, d_k, generator=g, dtype=dtype),
            torch.randn(*lead, l_k, d_v, generator=g, dtype=dtype))


# --- equal to PyTorch's scaled_dot_product_attention ---------------------------------------------------

@pytest.mark.parametrize("lead, l_q, l_k, d_k, d_v", [
    ((), 1, 1, 1, 1),
    ((), 4, 4, 2, 2),
    ((3,), 5, 7, 8, 6),          # cross-attention shapes: L_q != L_k, d_k != d_v
    ((2, 12), 16, 16, 32, 32),   # batch x heads, MiniLM's head size
    ((2, 4), 33, 20, 64, 16),
])
def test_matches_torch_sdpa_without_mask(lead, l_q, l_k, d_k, d_v):
    q, k, v = _qkv(*lead, l_q=l_q, l_k=l_k, d_k=d_k, d_v=d_v)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (*lead, l_q, d_v) and weights.shape == (*lead, l_q, l_k)
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() <= 1e-6


@pytest.mark.parametrize("mask_kind", ["causal", "padding", "random"])
def test_matches_torch_sdpa_with_mask(mask_kind):
    b, h, length, d = 3, 4, 10, 16
    q, k, v = _qkv(b, h, l_q=length, l_k=length, d_k=d, d_v=d, seed=1)
    if mask_kind == "causal":
        mask = causal_mask(length)
    elif mask_kind == "padding":
        lengths = torch.tensor([10, 6, 1])
        mask = padding_mask((torch.arange(length) < lengths[:, None]).long())
    else:
        mask = torch.rand(b, h, length, length, generator=torch.Generator().manual_seed(2)) < 0.5
        mask[..., 0] = True  # every query keeps one key
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (out - expected).abs().max() <= 1e-6
    allowed = torch.broadcast_to(mask, weights.shape)
    assert torch.all(weights[~allowed] == 0)  # masked positions get exactly zero weight
    assert torch.allclose(weights.sum(-1), torch.ones(b, h, length), atol=1e-6)


def test_weights_are_a_probability_distribution_per_query():
    q, k, v = _qkv(2, 3, l_q=9, l_k=11, d_k=4, d_v=5, seed=3)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert torch.all(weights >= 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 9), atol=1e-6)
    assert torch.allclose(out, weights @ v)  # the output is the weighted average of the values


def test_broadcasts_leading_dimensions_like_matmul():
    q, _, _ = _qkv(2, 3, l_q=4, l_k=4, d_k=8, d_v=8)
    _, k, v = _qkv(1, 3, l_q=4, l_k=6, d_k=8, d_v=5, seed=4)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 4, 5) and weights.shape == (2, 3, 4, 6)
    assert (out - F.scaled_dot_product_attention(q, k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1))).abs().max() <= 1e-6


def test_hand_computed_two_token_example():
    # Two tokens, d_k = 2. Scores QK^T = [[1, 0], [1, 2]], divided by sqrt(2).
    q = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    s = 1 / math.sqrt(2)
    # row 0: softmax([s, 0]) = [e^s, 1] / (e^s + 1); row 1: softmax([s, 2s]) = [1, e^s] / (1 + e^s)
    a = math.exp(s) / (math.exp(s) + 1)  # 0.66976...
    expected_weights = torch.tensor([[a, 1 - a], [1 - a, a]])
    expected_out = torch.tensor([[a * 1 + (1 - a) * 3, a * 2 + (1 - a) * 4],
                                 [(1 - a) * 1 + a * 3, (1 - a) * 2 + a * 4]])
    out, weights = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(weights, expected_weights, atol=1e-6)
    assert torch.allclose(out, expected_out, atol=1e-6)
    assert abs(a - 0.669761) < 1e-6  # the number written out in the chapter's worked example
    # with a causal mask the first token can only see itself
    out_c, weights_c = scaled_dot_product_attention(q, k, v, causal_mask(2))
    assert torch.equal(weights_c[0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(out_c[0], v[0])


def test_float64_and_bfloat16_are_accepted():
    q, k, v = _qkv(2, l_q=3, l_k=3, d_k=4, d_v=4, dtype=torch.float64)
    out, _ = scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.float64
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() <= 1e-12
    out16, _ = scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out16.dtype == torch.bfloat16 and (out16.double() - out).abs().max() < 0.05


# --- masks -----------------------------------------------------------------------------------------------

def test_padding_mask_shape_and_values():
    am = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    m = padding_mask(am)
    assert m.dtype == torch.bool and m.shape == (2, 1, 1, 4)
    assert m[:, 0, 0].tolist() == [[True, True, True, False], [True, True, False, False]]
    assert torch.equal(padding_mask(am.bool()), m)


def test_causal_mask_is_lower_triangular():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m.tolist() == [[True, False, False, False], [True, True, False, False],
                          [True, True, True, False], [True, True, True, True]]


def test_padding_does_not_change_real_tokens():
    # a sequence padded with junk keys gives the same outputs for its real tokens as without padding
    q, k, v = _qkv(1, l_q=4, l_k=4, d_k=8, d_v=8, seed=5)
    padded_k = torch.cat([k, torch.randn(1, 3, 8)], dim=1)
    padded_v = torch.cat([v, torch.randn(1, 3, 8)], dim=1)
    mask = padding_mask(torch.tensor([[1, 1, 1, 1, 0, 0, 0]]))[:, 0]  # (1, 1, 7)
    out, _ = scaled_dot_product_attention(q, padded_k, padded_v, mask)
    assert torch.allclose(out, scaled_dot_product_attention(q, k, v)[0], atol=1e-6)


# --- bad inputs ------------------------------------------------------------------------------------------

GOOD = _qkv(2, l_q=3, l_k=4, d_k=8, d_v=5)


@pytest.mark.parametrize("args, error, words", [
    (([[1.0]], GOOD[1], GOOD[2]), TypeError, "q must be a torch.Tensor"),
    ((GOOD[0], "k", GOOD[2]), TypeError, "k must be a torch.Tensor"),
    ((GOOD[0], GOOD[1], torch.ones(2, 4, 5, dtype=torch.long)), TypeError, "floating-point"),
    ((GOOD[0].double(), GOOD[1], GOOD[2]), TypeError, "share one dtype"),
    ((GOOD[0], GOOD[1][..., :7], GOOD[2]), ValueError, "same last dimension d_k"),
    ((GOOD[0], GOOD[1], GOOD[2][:, :3]), ValueError, "same number of positions L_k"),
    ((torch.ones(8), GOOD[1], GOOD[2]), ValueError, "at least 2 dimensions"),
    ((GOOD[0][:1].expand(3, -1, -1), GOOD[1], GOOD[2]), ValueError, "do not broadcast"),
    ((GOOD[0].clone().index_fill_(2, torch.tensor([0]), float("nan")), GOOD[1], GOOD[2]), ValueError, "NaN"),
    ((GOOD[0], GOOD[1], GOOD[2].clone().fill_(float("inf"))), ValueError, "non-finite"),
])
def test_bad_inputs_raise_clear_errors(args, error, words):
    with pytest.raises(error, match=words):
        scaled_dot_product_attention(*args)


@pytest.mark.parametrize("mask, error, words", [
    (torch.ones(3, 4), TypeError, "boolean mask is expected"),                 # float 0/1
    (torch.ones(3, 4, dtype=torch.long), TypeError, "padding_mask"),          # tokenizer-style int
    ([[True] * 4] * 3, TypeError, "must be a torch.Tensor"),
    (torch.ones(3, 5, dtype=torch.bool), ValueError, "does not broadcast"),
    (torch.ones(5, 2, 3, 4, dtype=torch.bool), ValueError, "does not broadcast"),
    (torch.tensor([[True] * 4, [False] * 4, [True] * 4]), ValueError, "blocks every key"),
])
def test_bad_masks_raise_clear_errors(mask, error, words):
    with pytest.raises(error, match=words):
        scaled_dot_product_attention(*GOOD, mask=mask)


def test_fully_masked_row_in_a_broadcast_mask_raises_instead_of_nan():
    mask = padding_mask(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))  # second sequence is all padding
    with pytest.raises(ValueError, match="blocks every key"):
        scaled_dot_product_attention(*_qkv(2, 1, l_q=4, l_k=4), mask=mask)


@pytest.mark.parametrize("bad, error", [
    ([[1, 0]], TypeError), (torch.ones(2, 3, 4), ValueError), (torch.tensor([[1, 2]]), ValueError),
])
def test_padding_mask_rejects_bad_input(bad, error):
    with pytest.raises(error, match="attention_mask"):
        padding_mask(bad)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4"])
def test_causal_mask_rejects_bad_length(bad):
    with pytest.raises(ValueError, match="integer >= 1"):
        causal_mask(bad)


# --- multi-head self-attention -----------------------------------------------------------------------------

def test_multi_head_equals_heads_computed_one_by_one():
    torch.manual_seed(0)
    mha = MultiHeadSelfAttention(d_model=12, num_heads=3).eval()
    x = torch.randn(2, 5, 12)
    out, weights = mha(x)
    assert out.shape == (2, 5, 12) and weights.shape == (2, 3, 5, 5)
    q, k, v = mha.query(x), mha.key(x), mha.value(x)
    heads = []
    for h in range(3):
        cols = slice(4 * h, 4 * (h + 1))
        head_out = F.scaled_dot_product_attention(q[..., cols], k[..., cols], v[..., cols])
        heads.append(head_out)
    expected = mha.out(torch.cat(heads, dim=-1))
    assert (out - expected).abs().max() <= 1e-6


def test_multi_head_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(10, 3)
    mha = MultiHeadSelfAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(batch, seq_len, 8\)"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(TypeError, match="BERT attention block"):
        MultiHeadSelfAttention.from_bert_layer(torch.nn.Linear(2, 2))


# --- a real layer of the embedded encoder ----------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    model = lightft.load_model("minilm-l6", num_labels=None, attn_implementation="eager").eval()
    tokenizer = lightft.load_tokenizer("minilm-l6")
    test = lightft.load_dataset("rotten_tomatoes")["test"]
    texts = [test[0]["text"], test[1]["text"]]  # two real sentences of different length: padding
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return model, batch


def test_recomputes_layer0_attention_of_the_real_encoder(real):
    model, batch = real
    block = model.encoder.layer[0].attention
    seen = {}
    handles = [
        block.self.register_forward_pre_hook(
            lambda m, a, kw: seen.update(x=(a[0] if a else kw["hidden_states"])), with_kwargs=True),
        block.output.dense.register_forward_hook(lambda m, a, out: seen.update(out=out)),
    ]
    try:
        with torch.no_grad():
            reference = model(**batch, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    assert batch["attention_mask"].min() == 0, "the test wants a padded batch"

    # from the layer's own weights, by hand: project, split heads, the formula
    w = block.self
    x = seen["x"]
    b, length, d = x.shape
    heads = model.config.num_attention_heads

    def split(t):
        return t.view(b, length, heads, d // heads).transpose(1, 2)

    with torch.no_grad():
        q, k, v = split(w.query(x)), split(w.key(x)), split(w.value(x))
        context, weights = scaled_dot_product_attention(q, k, v, padding_mask(batch["attention_mask"]))
    assert (weights - reference.attentions[0]).abs().max() <= 1e-5

    # the module, loaded from the layer, reproduces the layer's output projection
    mha = MultiHeadSelfAttention.from_bert_layer(block)
    with torch.no_grad():
        out, mha_weights = mha(x, padding_mask(batch["attention_mask"]))
    assert (out - seen["out"]).abs().max() <= 1e-5
    assert (mha_weights - reference.attentions[0]).abs().max() <= 1e-5
    with torch.no_grad():  # concatenating the heads and applying W_O gives the block's output too
        by_hand = block.output.dense(context.transpose(1, 2).reshape(b, length, d))
    assert (by_hand - seen["out"]).abs().max() <= 1e-5


def test_capture_attention_and_from_bert_layer_on_every_layer(real):
    model, batch = real
    mask = padding_mask(batch["attention_mask"])
    for layer in (0, 5):
        captured = capture_attention(model, batch, layer=layer)
        mha = MultiHeadSelfAttention.from_bert_layer(model.encoder.layer[layer])  # a whole BertLayer
        with torch.no_grad():
            out, weights = mha(captured.hidden_states, mask)
        assert captured.weights.shape == (2, 12, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
        assert (weights - captured.weights).abs().max() <= 1e-5
        assert (out - captured.output).abs().max() <= 1e-5


def test_capture_attention_refuses_sdpa_models_and_bad_layers(real):
    model, batch = real
    with pytest.raises(ValueError, match="layer must be"):
        capture_attention(model, batch, layer=6)
    sdpa = lightft.load_model("minilm-l6", num_labels=None, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="eager"):
        capture_attention(sdpa, batch)
    with pytest.raises(TypeError, match="BERT-layout"):
        capture_attention(torch.nn.Linear(2, 2), batch)


# --- measurements -----------------------------------------------------------------------------------------

def test_scaling_statistics_follow_the_theory():
    rows = scaling_statistics([4, 64, 256], num_keys=16, samples=256)
    for row in rows:
        assert row["std_raw"] == pytest.approx(math.sqrt(row["d_k"]), rel=0.1)
        assert row["std_scaled"] == pytest.approx(1.0, rel=0.1)
    # without scaling the softmax saturates as d_k grows; with scaling it does not
    assert rows[0]["max_weight_raw"] < rows[1]["max_weight_raw"] < rows[2]["max_weight_raw"]
    assert rows[2]["entropy_raw"] < 0.5 * rows[2]["entropy_scaled"]
    assert abs(rows[0]["entropy_scaled"] - rows[2]["entropy_scaled"]) < 0.2
    assert rows[2]["jacobian_raw"] < 0.5 * rows[2]["jacobian_scaled"]
    with pytest.raises(ValueError, match="integer >= 1"):
        scaling_statistics([0])


def test_attention_cost_measures_quadratic_memory():
    threads = torch.get_num_threads()
    rows = attention_cost([32, 128], repeats=1, warmup=0, num_heads=2, d_head=8, threads=1)
    assert torch.get_num_threads() == threads and all(r.threads == 1 for r in rows)
    by = {(r.implementation, r.seq_len): r for r in rows}
    assert by[("lightft", 128)].weights_bytes == 2 * 128 * 128 * 4
    # the hand-written version stores the L x L scores and weights: at least the weights' size
    for length in (32, 128):
        assert by[("lightft", length)].peak_bytes >= by[("lightft", length)].weights_bytes
    # 4x the length -> 16x the memory (quadratic); PyTorch's fused kernel stays far below
    ratio = by[("lightft", 128)].peak_bytes / by[("lightft", 32)].peak_bytes
    assert 10 < ratio <= 16.5
    assert by[("torch", 128)].peak_bytes < by[("lightft", 128)].weights_bytes / 4
    assert all(r.median_ms > 0 for r in rows)
    with pytest.raises(ValueError, match="implementation must be one of .lightft., .torch."):
        attention_cost([8], implementations=("flash",))
    with pytest.raises(TypeError, match="seq_lengths"):
        attention_cost(64)


def test_layer0_block_output_from_hidden_states_and_layernorm(real):
    """The route the chapter describes with the model's own outputs: hidden_states[0] is layer 0's input;
    LayerNorm(W_O·heads + x) recomputed from the layer's weights equals what the real block returned."""
    model, batch = real
    block = model.encoder.layer[0].attention
    seen = {}
    handle = block.register_forward_hook(
        lambda m, a, out: seen.update(out=out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            reference = model(**batch, output_attentions=True, output_hidden_states=True)
    finally:
        handle.remove()
    x = reference.hidden_states[0]  # the embeddings: the input of layer 0
    mha = MultiHeadSelfAttention.from_bert_layer(block)
    with torch.no_grad():
        mha_out, weights = mha(x, padding_mask(batch["attention_mask"]))
        block_out = block.output.LayerNorm(mha_out + x)  # dropout is the identity in eval mode
    assert (weights - reference.attentions[0]).abs().max() <= 1e-5
    assert (block_out - seen["out"]).abs().max() <= 1e-5
    # and the check can fail: a wrong scale (the model width instead of the head width) is far off
    d_head = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        wrong = MultiHeadSelfAttention.from_bert_layer(block)
        wrong.query.weight.mul_(math.sqrt(d_head / model.config.hidden_size))
        wrong.query.bias.mul_(math.sqrt(d_head / model.config.hidden_size))
        _, wrong_weights = wrong(x, padding_mask(batch["attention_mask"]))
    assert (wrong_weights - reference.attentions[0]).abs().max() > 1e-2


def test_dtype_mismatch_and_float_mask_messages():
    q, k, v = _qkv(l_q=2, l_k=2, d_k=2, d_v=2)
    with pytest.raises(TypeError, match="share one dtype"):
        scaled_dot_product_attention(q, k.double(), v)
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask=torch.zeros(2, 2))  # an additive 0/-inf style mask
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), k.long(), v.long())
