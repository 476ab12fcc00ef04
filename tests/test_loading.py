"""lightft.models loaders and lightft.hub: the embedded encoder, saved folders, and hub names offline."""

from __future__ import annotations

import time

import pytest
import torch

import lightft


def test_embedded_model_loads_with_seeded_head():
    a = lightft.load_model("minilm-l6", labels=["negative", "positive"], seed=3)
    b = lightft.load_model("minilm-l6", num_labels=2, seed=3)
    assert a.config.model_type == "bert" and a.config.num_hidden_layers == 6 and a.config.hidden_size == 384
    assert a.config.id2label == {0: "negative", 1: "positive"}
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert lightft.count_parameters(a) == 22_713_986


def test_bare_encoder_and_tokenizer_give_a_real_embedding():
    tok = lightft.load_tokenizer("minilm-l6")
    enc = lightft.load_model("minilm-l6", num_labels=None)
    batch = tok(["a gripping, funny film", "a dull and tedious mess"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = enc(**batch).last_hidden_state
    assert hidden.shape[:2] == batch["input_ids"].shape and hidden.shape[-1] == 384
    # pretrained weights (not random): the two sentences are far from identical but related
    mean = (hidden * batch["attention_mask"][..., None]).sum(1) / batch["attention_mask"].sum(1, keepdim=True)
    cos = torch.nn.functional.cosine_similarity(mean[0], mean[1], dim=0).item()
    assert -0.5 < cos < 0.95


def test_saved_folder_round_trip(tmp_path):
    model = lightft.load_model("minilm-l6", seed=1)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    again = lightft.load_model(tmp_path)
    assert torch.equal(model.classifier.weight, again.classifier.weight)


def test_hub_name_offline_fails_at_once():
    start = time.perf_counter()
    with pytest.raises(lightft.HubUnreachableError, match="minilm-l6"):
        lightft.load_model("distilbert-base-uncased")
    with pytest.raises(lightft.HubUnreachableError):
        lightft.load_tokenizer("distilbert-base-uncased")
    assert time.perf_counter() - start < 5
    assert lightft.hub_reachable() is False  # HF_HUB_OFFLINE=1 in conftest


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"name_or_path": 3}, TypeError, "model name or a folder path"),
        ({"num_labels": 0}, ValueError, "num_labels must be an integer >= 1"),
        ({"labels": ["only"]}, ValueError, "at least two"),
        ({"trust_remote_code": True}, ValueError, "trust_remote_code"),
        ({"use_safetensors": False}, ValueError, "safetensors only"),
        ({"name_or_path": "./no/such/folder"}, FileNotFoundError, "no such model folder"),
    ],
)
def test_bad_model_arguments(kwargs, error, message):
    kwargs.setdefault("name_or_path", "minilm-l6")
    with pytest.raises(error, match=message):
        lightft.load_model(**kwargs)


def test_folder_without_config_and_a_file(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        lightft.load_model(tmp_path)
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="must be a folder"):
        lightft.load_model(f)
