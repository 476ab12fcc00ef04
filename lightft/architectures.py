"""BERT-family architectures from their configurations, and the exact BERT -> DistilBERT rewrite.

Chapter: "BERT and DistilBERT" (``book/bert.md``).

* :func:`architecture_config` and :func:`build_encoder` build BERT-base, BERT-large, DistilBERT-base
  and the embedded MiniLM-L6 from their configurations alone (random weights, no download): the
  published shapes, so parameter counts, memory and inference times are those of the real models.
* :func:`bert_to_distilbert` rewrites a BERT-layout encoder into ``DistilBertModel`` layout, exactly:
  DistilBERT *is* a BERT encoder without token-type embeddings and pooler, so every weight has a place.
* :func:`save_as_distilbert` saves such a rewrite with a DistilBERT tokenizer and a classification head,
  for ``DistilBert*.from_pretrained`` to read offline.

The rewrite keeps the embeddings' names, renames each layer's weights as :data:`LAYER_RENAMES` lists, drops the
pooler, and folds the token-type row into the position table: BERT adds ``token_type_embeddings[token_type_ids]`` to
every token, and for single-segment input every ``token_type_id`` is 0, so adding row 0 to every position gives the
same sum. Sentence *pairs* (segment B, ``token_type_id`` 1) cannot be represented: the rewrite treats every token as
segment A."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel, DistilBertConfig,
                          DistilBertForSequenceClassification, DistilBertModel, DistilBertTokenizer)
from transformers.activations import ACT2FN

from lightft import checks
from lightft.models import embedded_model_path, load_model, load_tokenizer, quiet_transformers

#: Architectures that :func:`build_encoder` knows by name -> a one-line description.
ARCHITECTURES: dict[str, str] = {
    "bert-base": "BERT-base (Devlin et al. 2019): 12 layers, hidden 768, 12 heads, FFN 3072",
    "bert-large": "BERT-large (Devlin et al. 2019): 24 layers, hidden 1024, 16 heads, FFN 4096",
    "distilbert-base": "DistilBERT-base (Sanh et al. 2019): 6 layers, hidden 768, 12 heads, FFN 3072",
    "minilm-l6": "all-MiniLM-L6-v2, the embedded encoder: 6 layers, hidden 384, 12 heads, FFN 1536",
}

_NEEDED_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps")
#: The rewrite, layer by layer: BERT's ``encoder.layer.i.<key>`` -> DistilBERT's ``transformer.layer.i.<value>``.
LAYER_RENAMES = {
    "attention.self.query": "attention.q_lin", "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin", "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm", "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2", "output.LayerNorm": "output_layer_norm",
}


def architecture_config(name: str):
    """The ``BertConfig`` (``DistilBertConfig`` for ``"distilbert-base"``) of a name in :data:`ARCHITECTURES`.

    No download: ``BertConfig()`` and ``DistilBertConfig()`` default to the bert-base-uncased and
    distilbert-base-uncased shapes, BERT-large sets its four sizes, ``"minilm-l6"`` reads the embedded model's
    ``config.json``."""
    checks.instance("name", name, str, f"a string, one of {', '.join(ARCHITECTURES)}")
    key = checks.choice("name", name.strip().lower(), ARCHITECTURES)
    if key == "bert-large":
        return BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    if key == "minilm-l6":
        return BertConfig.from_json_file(str(embedded_model_path("minilm-l6") / "config.json"))
    return DistilBertConfig() if key == "distilbert-base" else BertConfig()


def build_encoder(name_or_config: Any, *, with_head: bool = False, num_labels: int = 2, seed: int = 0) -> nn.Module:
    """An encoder with random weights, built from a named architecture or a config, offline.

    ``name_or_config`` is a name from :data:`ARCHITECTURES` or a ``BertConfig`` / ``DistilBertConfig``.
    ``with_head=False`` gives the bare encoder (``BertModel`` with its pooler, or ``DistilBertModel``;
    ``last_hidden_state``: ``(batch, seq_len, hidden)``); ``True`` gives ``*ForSequenceClassification`` with
    ``num_labels`` outputs, ``(batch, num_labels)``. ``seed`` makes two builds identical. Random weights, in eval
    mode: for shapes, parameter counts, memory and timing, never for predictions."""
    if isinstance(name_or_config, str):
        config = architecture_config(name_or_config)
    else:
        checks.instance("name_or_config", name_or_config, (BertConfig, DistilBertConfig),
                        f"an architecture name ({', '.join(ARCHITECTURES)}) or a BertConfig/DistilBertConfig")
        config = copy.deepcopy(name_or_config)  # num_labels is set below: leave the caller's config alone
    checks.instance("with_head", with_head, bool, "True or False")
    config.num_labels = checks.integer("num_labels", num_labels) if with_head else config.num_labels
    torch.manual_seed(seed)
    return (AutoModelForSequenceClassification if with_head else AutoModel).from_config(config).eval()


def _bert_encoder(model: Any) -> nn.Module:
    """The ``BertModel`` inside ``model`` (itself, or ``model.bert``), or a TypeError saying what is accepted."""
    if isinstance(getattr(model, "bert", model), BertModel):
        return getattr(model, "bert", model)
    distil = getattr(getattr(model, "config", None), "model_type", None) == "distilbert"
    layout = "is already in DistilBERT layout" if distil else "is not BERT-layout"
    raise TypeError(f"{type(model).__name__} {layout}; expected a transformers.BertModel or a Bert*For* model (.bert)")


def _check_rewritable(config: Any) -> None:
    """Raise ValueError unless a BERT config has an exact DistilBERT equivalent."""
    if missing := [f for f in _NEEDED_FIELDS if getattr(config, f, None) is None]:
        raise ValueError(f"the config lacks {', '.join(missing)}; bert_to_distilbert needs a BERT config")
    for field in _NEEDED_FIELDS[:-2]:  # the sizes (DistilBertModel itself checks that the heads divide dim)
        checks.integer(f"config.{field}", getattr(config, field))
    if not isinstance(config.hidden_act, str) or config.hidden_act not in ACT2FN:
        raise ValueError(f"config.hidden_act must name an activation such as 'gelu', got {config.hidden_act!r}")
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise ValueError("a BERT decoder (is_decoder / add_cross_attention) has no DistilBERT equivalent")
    checks.choice("config.position_embedding_type", getattr(config, "position_embedding_type", None),
                  (None, "absolute"))
    if abs(float(config.layer_norm_eps) - 1e-12) > 1e-15:  # DistilBertModel's LayerNorms always use 1e-12
        raise ValueError(f"config.layer_norm_eps={config.layer_norm_eps}; DistilBertModel hard-codes 1e-12")


def distilbert_config(bert_config: Any, **overrides):
    """The ``DistilBertConfig`` with the shapes of a BERT config; ``overrides`` (``num_labels=2``) go on.

    Maps ``hidden_size -> dim``, ``num_hidden_layers -> n_layers``, ``num_attention_heads -> n_heads``,
    ``intermediate_size -> hidden_dim``, ``hidden_act -> activation``, the dropout rates, vocabulary, positions and
    ``pad_token_id``. ValueError when a field is missing or invalid, or the variant has no DistilBERT equivalent (a
    decoder, relative positions, a LayerNorm eps other than ``1e-12``)."""
    _check_rewritable(bert_config)
    c = bert_config
    settings = dict(vocab_size=c.vocab_size, max_position_embeddings=c.max_position_embeddings,
                    sinusoidal_pos_embds=False, n_layers=c.num_hidden_layers, n_heads=c.num_attention_heads,
                    dim=c.hidden_size, hidden_dim=c.intermediate_size, activation=c.hidden_act,
                    dropout=getattr(c, "hidden_dropout_prob", 0.1),
                    attention_dropout=getattr(c, "attention_probs_dropout_prob", 0.1),
                    initializer_range=getattr(c, "initializer_range", 0.02), pad_token_id=getattr(c, "pad_token_id", 0))
    if isinstance(getattr(c, "_attn_implementation", None), str):
        settings["attn_implementation"] = c._attn_implementation
    return DistilBertConfig(**{**settings, **overrides})


def distilbert_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a BERT-layout encoder renamed (and the token-type row folded) for ``DistilBertModel``.

    Returns new tensors (nothing is shared with ``model``), keyed as ``DistilBertModel.state_dict()``; the position
    table is ``position_embeddings.weight + token_type_embeddings.weight[0]``, shape
    ``(max_position_embeddings, hidden)``. See the module docstring for the full mapping."""
    bert = _bert_encoder(model)
    _check_rewritable(bert.config)  # before any weight is touched
    src = bert.state_dict()
    out = {f"embeddings.{name}": src[f"embeddings.{name}"]
           for name in ("word_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")}
    out["embeddings.position_embeddings.weight"] = (src["embeddings.position_embeddings.weight"]
                                                    + src["embeddings.token_type_embeddings.weight"][0])
    for i in range(bert.config.num_hidden_layers):
        for old, new in LAYER_RENAMES.items():
            for part in ("weight", "bias"):
                out[f"transformer.layer.{i}.{new}.{part}"] = src[f"encoder.layer.{i}.{old}.{part}"]
    return {name: tensor.detach().clone() for name, tensor in out.items()}


def bert_to_distilbert(model: nn.Module, num_labels: int | None = None, *, seed: int = 0) -> nn.Module:
    """Rewrite a BERT-layout encoder into DistilBERT layout, exactly.

    ``model``: a ``transformers.BertModel``, or a model holding one in ``.bert`` (``BertFor*``); only the encoder is
    used. ``num_labels=None`` returns a ``DistilBertModel``; an integer, a ``DistilBertForSequenceClassification``
    with a new head seeded by ``seed``. The result is on ``model``'s device, in its dtype and train/eval mode. For
    single-segment input its ``last_hidden_state`` ``(batch, seq_len, hidden)`` equals the BERT encoder's at every
    non-padding token (up to float rounding). Heads are never carried over: BERT's classifier reads the *pooler*
    (dense + tanh on ``[CLS]``), DistilBERT's reads ``[CLS]`` through ``pre_classifier`` + ReLU. Rewrite first, then
    fine-tune. TypeError when ``model`` is not BERT-layout; ValueError when its config cannot be rewritten
    (:func:`distilbert_config`)."""
    bert = _bert_encoder(model)
    extra = {} if num_labels is None else {"num_labels": checks.integer("num_labels", num_labels)}
    config, weights = distilbert_config(bert.config, **extra), distilbert_state_dict(bert)
    reference = next(bert.parameters())
    torch.manual_seed(seed)
    out = DistilBertModel(config) if num_labels is None else DistilBertForSequenceClassification(config)
    (out if num_labels is None else out.distilbert).load_state_dict(weights, strict=True)
    return out.to(device=reference.device, dtype=reference.dtype).train(model.training)


def save_as_distilbert(folder: str | os.PathLike, model: str | os.PathLike | nn.Module = "minilm-l6", *,
                       num_labels: int = 2, labels: list[str] | None = None, tokenizer: Any = None,
                       seed: int = 0) -> Path:
    """Save a BERT-layout encoder as a ``DistilBertForSequenceClassification`` with a DistilBERT tokenizer.

    ``folder`` (returned as a ``Path``) then holds ``config.json``, ``model.safetensors`` and the tokenizer, read
    offline by ``DistilBertForSequenceClassification.from_pretrained(folder)`` and
    ``DistilBertTokenizerFast.from_pretrained(folder)``. ``model``: ``"minilm-l6"``, a saved folder or hub name
    (:func:`lightft.load_model`), or a BERT-layout module, which needs ``tokenizer=`` (its WordPiece tokenizer, saved
    as a ``DistilBertTokenizer``). ``num_labels`` / ``labels`` (class names) size the new head, seeded by ``seed``."""
    checks.instance("folder", folder, (str, os.PathLike), "a folder path")
    checks.instance("model", model, (str, os.PathLike, nn.Module), "a model name, a folder or a BERT-layout nn.Module")
    if labels is not None:  # class names: at least two
        num_labels = checks.integer("the number of labels", len(labels := [str(label) for label in labels]), 2)
    if isinstance(model, nn.Module) and tokenizer is None:
        raise ValueError("pass tokenizer= (its WordPiece tokenizer) with a module; a name or folder has its own")
    tokenizer = _distilbert_tokenizer(load_tokenizer(model) if tokenizer is None else tokenizer)
    source = model if isinstance(model, nn.Module) else load_model(model, num_labels=None)
    out = bert_to_distilbert(source, num_labels=num_labels, seed=seed).eval()
    if labels is not None:
        out.config.id2label, out.config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        out.save_pretrained(path)  # transformers 5 always writes model.safetensors
        tokenizer.save_pretrained(path)
    return path


def _distilbert_tokenizer(tokenizer: Any):
    """``tokenizer``'s vocabulary and settings as a ``DistilBertTokenizer``."""
    if not callable(getattr(tokenizer, "get_vocab", None)):
        raise TypeError(f"tokenizer must be a WordPiece (BERT) tokenizer, got {type(tokenizer).__name__}")
    return DistilBertTokenizer(
        vocab=dict(tokenizer.get_vocab()), do_lower_case=getattr(tokenizer, "do_lower_case", True),
        tokenize_chinese_chars=getattr(tokenizer, "tokenize_chinese_chars", True),
        strip_accents=getattr(tokenizer, "strip_accents", None),
        model_max_length=getattr(tokenizer, "model_max_length", 512))
