"""lightft.lora: the hand-written LoRALinear against peft on a tiny random Llama (2 layers, hidden 64)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from lightft.lora import LoRALinear, add_lora, merge_lora


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_lora_linear_starts_at_base_and_merges():
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    layer = LoRALinear(base, r=4, alpha=8)
    x = torch.randn(3, 5, 16)
    assert torch.equal(layer(x), base(x))            # B = 0: training starts from the base model
    nn.init.normal_(layer.lora_B)
    assert torch.allclose(layer.merged()(x), layer(x), atol=1e-6)
    assert trainable(layer) == 4 * (16 + 8)


def test_matches_peft_output_and_count(tiny):
    from peft import LoraConfig, get_peft_model

    ids = torch.randint(0, 100, (2, 7))
    ours, theirs = copy.deepcopy(tiny), copy.deepcopy(tiny)
    add_lora(ours, ["q_proj", "v_proj"], r=4, alpha=8)
    theirs = get_peft_model(theirs, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    assert trainable(ours) == trainable(theirs) == 2 * 4 * ((64 + 64) + (64 + 32))  # layers * r * (q: in+out, v: in+out)
    torch.manual_seed(1)
    for name, module in ours.named_modules():
        if isinstance(module, LoRALinear):
            nn.init.normal_(module.lora_B, std=0.1)
            peft_layer = theirs.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.data.copy_(module.lora_A)
            peft_layer.lora_B["default"].weight.data.copy_(module.lora_B)
    with torch.no_grad():
        out, ref = ours(ids).logits, theirs(ids).logits
        assert not torch.allclose(out, tiny(ids).logits, atol=1e-4)   # the update changed something
        assert torch.allclose(out, ref, atol=1e-6)
        merge_lora(ours)
        assert not any(isinstance(m, LoRALinear) for m in ours.modules())
        assert torch.allclose(ours(ids).logits, theirs.merge_and_unload()(ids).logits, atol=1e-5)


def test_wrong_target_raises(tiny):
    with pytest.raises(ValueError, match="qproj"):
        add_lora(copy.deepcopy(tiny), ["qproj"])
    with pytest.raises(TypeError):
        LoRALinear(nn.Conv1d(2, 2, 1))
