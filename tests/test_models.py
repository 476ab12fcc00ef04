"""lightft.architectures (named architectures, the BERT -> DistilBERT rewrite) and lightft.latency.

References: the published parameter counts of bert-base-uncased (109,482,240 in ``BertModel``),
bert-large-uncased (335,141,888) and distilbert-base-uncased (66,362,880 in ``DistilBertModel``);
the embedded MiniLM's own forward pass, on real Rotten Tomatoes sentences, for the rewrite.
"""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertModel,
    DistilBertTokenizerFast,
)

import lightft
from lightft.architectures import (
    ARCHITECTURES,
    architecture_config,
    bert_to_distilbert,
    build_encoder,
    distilbert_config,
    distilbert_state_dict,
    save_as_distilbert,
)
from lightft.latency import LatencyResult, compare_latency, measure_latency, random_batch

TOLERANCE = 1e-5  # max abs difference allowed between BERT and its DistilBERT rewrite, real tokens


@pytest.fixture(scope="module")
def minilm() -> BertModel:
    return lightft.load_model("minilm-l6", num_labels=None).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return lightft.load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return list(lightft.load_dataset("rotten_tomatoes")["test"]["text"][:24])


def tiny_bert_config(**overrides) -> BertConfig:
    settings = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=32, max_position_embeddings=24, type_vocab_size=2)
    settings.update(overrides)
    return BertConfig(**settings)


def max_real_token_diff(a: torch.Tensor, b: torch.Tensor, attention_mask: torch.Tensor) -> float:
    return (a - b).abs()[attention_mask.bool()].max().item()


# --- architectures built from configs, checked against the published parameter counts --------------

@pytest.mark.parametrize(
    ("name", "cls", "expected"),
    [
        ("bert-base", BertModel, 109_482_240),         # bert-base-uncased
        ("distilbert-base", DistilBertModel, 66_362_880),  # distilbert-base-uncased
        ("bert-large", BertModel, 335_141_888),        # bert-large-uncased
    ],
)
def test_named_architectures_have_the_published_parameter_counts(name, cls, expected):
    with torch.device("meta"):  # shapes only: no memory allocated, no weights initialised (BERT-large in ms)
        model = build_encoder(name)
    assert type(model) is cls
    assert lightft.count_parameters(model) == expected


def test_minilm_architecture_matches_the_embedded_checkpoint(minilm):
    built = build_encoder("minilm-l6")
    assert type(built) is BertModel
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in minilm.state_dict().items()}
    assert lightft.count_parameters(built) == lightft.count_parameters(minilm) == 22_713_216


def test_architecture_config_shapes_and_errors():
    large = architecture_config("bert-large")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads, large.intermediate_size) == (
        24, 1024, 16, 4096)
    assert isinstance(architecture_config("distilbert-base"), DistilBertConfig)
    assert architecture_config(" BERT-Base ").hidden_size == 768
    assert set(ARCHITECTURES) == {"bert-base", "bert-large", "distilbert-base", "minilm-l6"}
    with pytest.raises(ValueError, match="name must be one of 'bert-base'.*got 'gpt2'"):
        architecture_config("gpt2")
    with pytest.raises(TypeError, match="string"):
        architecture_config(3)


def test_build_encoder_with_head_is_seeded_and_leaves_the_config_alone():
    config = tiny_bert_config()
    a = build_encoder(config, with_head=True, num_labels=3, seed=1)
    b = build_encoder(config, with_head=True, num_labels=3, seed=1)
    c = build_encoder(config, with_head=True, num_labels=3, seed=2)
    assert isinstance(a, BertForSequenceClassification) and a.classifier.out_features == 3
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert config.num_labels == 2  # the caller's config was copied, not changed
    assert not a.training
    distil = build_encoder(DistilBertConfig(n_layers=1, dim=16, n_heads=2, hidden_dim=32), with_head=True)
    assert isinstance(distil, DistilBertForSequenceClassification)
    with pytest.raises(TypeError, match="BertConfig"):
        build_encoder(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="num_labels"):
        build_encoder(config, with_head=True, num_labels=0)


# --- bert_to_distilbert -----------------------------------------------------------------------------

def test_rewrite_of_the_embedded_minilm_is_exact_on_real_sentences(minilm, tokenizer, sentences):
    distil = bert_to_distilbert(minilm)
    assert type(distil) is DistilBertModel and not distil.training
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the test should include padded positions"
    with torch.inference_mode():
        ref = minilm(**batch).last_hidden_state
        out = distil(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert out.shape == ref.shape == (len(sentences), batch["input_ids"].shape[1], 384)
    assert max_real_token_diff(ref, out, batch["attention_mask"]) <= TOLERANCE
    # what disappears: the pooler (h*h + h) and the token-type table (2 x h), folded into positions
    h = minilm.config.hidden_size
    assert lightft.count_parameters(minilm) - lightft.count_parameters(distil) == h * h + h + 2 * h


def test_rewrite_folds_the_token_type_row_and_maps_every_weight():
    torch.manual_seed(0)
    bert = BertModel(tiny_bert_config()).eval()
    with torch.no_grad():  # make the token-type row large, so forgetting to fold it would show
        bert.embeddings.token_type_embeddings.weight.normal_(0, 1.0)
    weights = distilbert_state_dict(bert)
    assert set(weights) == set(DistilBertModel(distilbert_config(bert.config)).state_dict())
    expected = bert.embeddings.position_embeddings.weight + bert.embeddings.token_type_embeddings.weight[0]
    assert torch.equal(weights["embeddings.position_embeddings.weight"], expected)
    assert torch.equal(weights["transformer.layer.1.ffn.lin2.weight"], bert.encoder.layer[1].output.dense.weight)
    weights["transformer.layer.1.ffn.lin2.weight"].add_(1.0)  # copies: the BERT model is untouched
    assert not torch.equal(weights["transformer.layer.1.ffn.lin2.weight"], bert.encoder.layer[1].output.dense.weight)

    ids = torch.randint(1, 50, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    distil = bert_to_distilbert(bert)
    with torch.inference_mode():
        ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        out = distil(input_ids=ids, attention_mask=mask).last_hidden_state
    assert max_real_token_diff(ref, out, mask) <= TOLERANCE


def test_rewrite_keeps_dtype_and_mode_and_can_add_a_seeded_head(minilm, tokenizer, sentences):
    bert = BertModel(tiny_bert_config()).to(torch.bfloat16).train()
    distil = bert_to_distilbert(bert)
    assert next(distil.parameters()).dtype == torch.bfloat16 and distil.training

    classifier = lightft.load_model("minilm-l6", num_labels=2)  # BertForSequenceClassification
    a = bert_to_distilbert(classifier, num_labels=3, seed=5).eval()
    b = bert_to_distilbert(classifier, num_labels=3, seed=5).eval()
    assert isinstance(a, DistilBertForSequenceClassification) and a.config.num_labels == 3
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    batch = tokenizer(sentences[:4], padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = minilm(**batch).last_hidden_state
        out = a.distilbert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = a(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert max_real_token_diff(ref, out, batch["attention_mask"]) <= TOLERANCE
    assert logits.shape == (4, 3)


def test_rewrite_rejects_what_is_not_bert_layout():
    distil = DistilBertModel(DistilBertConfig(n_layers=1, dim=16, n_heads=2, hidden_dim=32))
    with pytest.raises(TypeError, match="already in DistilBERT layout"):
        bert_to_distilbert(distil)
    with pytest.raises(TypeError, match="BertModel"):
        bert_to_distilbert(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="BertModel"):
        bert_to_distilbert("minilm-l6")
    with pytest.raises(ValueError, match="num_labels"):
        bert_to_distilbert(BertModel(tiny_bert_config()), num_labels=0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (types.SimpleNamespace(hidden_size=16, num_attention_heads=4), "lacks vocab_size"),
        (tiny_bert_config(layer_norm_eps=1e-5), "layer_norm_eps"),
        (tiny_bert_config(is_decoder=True), "decoder"),
        (types.SimpleNamespace(**{k: v for k, v in tiny_bert_config().to_dict().items() if k != "hidden_act"}),
         "lacks hidden_act"),
        (tiny_bert_config(hidden_act="no-such-activation"), "hidden_act"),
    ],
)
def test_config_errors_say_what_is_wrong(config, message):
    with pytest.raises(ValueError, match=message):
        distilbert_config(config)


def test_config_with_missing_field_on_a_model_is_refused_before_copying():
    bert = BertModel(tiny_bert_config())
    bert.config = types.SimpleNamespace(**{k: v for k, v in bert.config.to_dict().items() if k != "intermediate_size"})
    with pytest.raises(ValueError, match="intermediate_size"):
        bert_to_distilbert(bert)


def test_distilbert_config_maps_the_shapes():
    config = distilbert_config(architecture_config("minilm-l6"), num_labels=4)
    assert (config.dim, config.n_layers, config.n_heads, config.hidden_dim) == (384, 6, 12, 1536)
    assert (config.activation, config.vocab_size, config.max_position_embeddings, config.num_labels) == (
        "gelu", 30522, 512, 4)


def test_saved_rewrite_loads_with_the_distilbert_classes_offline(tmp_path, minilm, tokenizer, sentences):
    folder = save_as_distilbert(tmp_path / "distil", "minilm-l6", labels=["negative", "positive"])
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    model = DistilBertForSequenceClassification.from_pretrained(folder).eval()
    distil_tokenizer = DistilBertTokenizerFast.from_pretrained(folder)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    batch = distil_tokenizer(sentences, padding=True, return_tensors="pt")
    reference = tokenizer(sentences, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    assert "token_type_ids" not in batch  # DistilBERT takes none
    with torch.inference_mode():
        ref = minilm(**reference).last_hidden_state
        out = model.distilbert(**batch).last_hidden_state
    assert max_real_token_diff(ref, out, batch["attention_mask"]) <= TOLERANCE
    with pytest.raises(ValueError, match="tokenizer="):
        save_as_distilbert(tmp_path / "other", minilm)


# --- latency ----------------------------------------------------------------------------------------

class _Recorder(nn.Module):
    """A stand-in model that records the order of its calls."""

    def __init__(self, name: str, log: list[str]):
        super().__init__()
        self.name, self.log = name, log
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        assert not self.training and torch.is_inference_mode_enabled()
        self.log.append(self.name)
        return input_ids


def test_compare_latency_interleaves_models_and_restores_their_mode():
    log: list[str] = []
    a, b = _Recorder("a", log), _Recorder("b", log)
    a.train()
    b.eval()
    results = compare_latency({"a": a, "b": b}, batch_size=2, seq_len=3, repeats=3, warmup=1)
    assert log == ["a", "b"] * 4  # one warm-up round, then three timed rounds, alternating
    assert a.training and not b.training
    for result in results.values():
        assert isinstance(result, LatencyResult) and len(result.times_s) == 3
        assert min(result.times_s) <= result.median_s <= max(result.times_s)
        assert result.ms_per_example == pytest.approx(result.ms_per_batch / 2)


def test_measure_latency_on_a_real_encoder_and_its_errors():
    model = build_encoder(tiny_bert_config())
    result = measure_latency(model, batch_size=2, seq_len=8, repeats=2, warmup=0)
    assert result.batch_size == 2 and result.seq_len == 8 and all(t > 0 for t in result.times_s)
    assert result.examples_per_s == pytest.approx(2 / result.median_s)
    batch = random_batch(model, 2, 8)
    assert batch["input_ids"].shape == (2, 8) and batch["attention_mask"].sum() == 16
    assert int(batch["input_ids"].max()) < 50
    with pytest.raises(ValueError, match="max_position_embeddings"):
        measure_latency(model, seq_len=25)
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, repeats=0)
    with pytest.raises(TypeError, match="nn.Module"):
        measure_latency("bert-base")


def test_encoder_forward_flops_matches_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from lightft.latency import encoder_forward_flops

    config = tiny_bert_config(attn_implementation="eager")
    model = BertModel(config, add_pooling_layer=False).eval()
    ids = torch.randint(0, 50, (3, 10))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(input_ids=ids)
    assert encoder_forward_flops(config, 3, 10) == counter.get_total_flops()
    # by hand: b s L (2 (4 h^2 + 2 h I) + 4 s h) with b=3, s=10, L=2, h=16, I=32
    assert encoder_forward_flops(config, 3, 10) == 3 * 10 * 2 * (2 * (4 * 256 + 2 * 16 * 32) + 4 * 10 * 16)
    distil = DistilBertConfig(n_layers=2, dim=16, n_heads=4, hidden_dim=32)
    assert encoder_forward_flops(distil, 3, 10) == encoder_forward_flops(config, 3, 10)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        encoder_forward_flops(types.SimpleNamespace(hidden_size=16), 1, 1)
