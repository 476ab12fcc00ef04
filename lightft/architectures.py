"""BERT-family architectures from their configurations, and the exact BERT -> DistilBERT rewrite.

Chapter: "BERT and DistilBERT" (``book/bert.md``).

* :func:`architecture_config` and :func:`build_encoder` build the encoders the chapter compares —
  BERT-base, BERT-large, DistilBERT-base and the embedded MiniLM-L6 — from their configurations
  alone, with random weights and no download. The shapes are the published ones, so parameter
  counts, memory footprints and inference times are those of the real models.
* :func:`bert_to_distilbert` rewrites a BERT-layout encoder into ``DistilBertModel`` layout, exactly:
  DistilBERT *is* a BERT encoder without token-type embeddings and without a pooler, so every weight
  has a place to go.
* :func:`save_as_distilbert` writes such a rewrite, with a DistilBERT tokenizer and a sequence
  classification head, to a folder that ``DistilBertForSequenceClassification.from_pretrained`` and
  ``DistilBertTokenizerFast.from_pretrained`` read offline.

How the rewrite maps the weights (``i`` runs over the layers)::

    BERT (BertModel)                                   DistilBERT (DistilBertModel)
    embeddings.word_embeddings                     ->  embeddings.word_embeddings
    embeddings.position_embeddings
        + embeddings.token_type_embeddings[0]      ->  embeddings.position_embeddings
    embeddings.LayerNorm                           ->  embeddings.LayerNorm
    encoder.layer.i.attention.self.query/key/value ->  transformer.layer.i.attention.q_lin/k_lin/v_lin
    encoder.layer.i.attention.output.dense         ->  transformer.layer.i.attention.out_lin
    encoder.layer.i.attention.output.LayerNorm     ->  transformer.layer.i.sa_layer_norm
    encoder.layer.i.intermediate.dense             ->  transformer.layer.i.ffn.lin1
    encoder.layer.i.output.dense                   ->  transformer.layer.i.ffn.lin2
    encoder.layer.i.output.LayerNorm               ->  transformer.layer.i.output_layer_norm
    pooler.dense                                   ->  (dropped: DistilBERT has no pooler)

BERT adds ``token_type_embeddings[token_type_ids]`` to every token; for single-segment input every
``token_type_id`` is 0, so folding row 0 into the position table gives the same sum, position by
position. Sentence *pairs* (segment B has ``token_type_id`` 1) cannot be represented: DistilBERT has
no segment embedding, and the rewrite treats every token as segment A.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "architecture_config",
    "bert_to_distilbert",
    "build_encoder",
    "distilbert_config",
    "distilbert_state_dict",
    "save_as_distilbert",
]

#: Architectures that :func:`build_encoder` knows by name -> a one-line description.
ARCHITECTURES: dict[str, str] = {
    "bert-base": "BERT-base (Devlin et al. 2019): 12 layers, hidden 768, 12 heads, FFN 3072",
    "bert-large": "BERT-large (Devlin et al. 2019): 24 layers, hidden 1024, 16 heads, FFN 4096",
    "distilbert-base": "DistilBERT-base (Sanh et al. 2019): 6 layers, hidden 768, 12 heads, FFN 3072",
    "minilm-l6": "all-MiniLM-L6-v2, the embedded encoder: 6 layers, hidden 384, 12 heads, FFN 1536",
}

#: The BERT config fields the rewrite reads.
_NEEDED_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps",
)
#: DistilBertModel builds every LayerNorm with this epsilon, whatever its config says.
DISTILBERT_LAYER_NORM_EPS = 1e-12


def architecture_config(name: str):
    """The configuration of a named architecture: ``"bert-base"``, ``"bert-large"``,
    ``"distilbert-base"`` or ``"minilm-l6"``.

    Returns a ``transformers.BertConfig`` (``DistilBertConfig`` for ``"distilbert-base"``). Nothing is
    downloaded: ``BertConfig()`` and ``DistilBertConfig()`` default to the bert-base-uncased and
    distilbert-base-uncased shapes, BERT-large sets its four sizes, and ``"minilm-l6"`` reads the
    ``config.json`` of the embedded model.
    """
    from transformers import BertConfig, DistilBertConfig

    if not isinstance(name, str):
        raise TypeError(
            f"architecture name must be a string, got {type(name).__name__}; accepted: {sorted(ARCHITECTURES)}"
        )
    key = name.strip().lower()
    if key == "bert-base":
        return BertConfig()
    if key == "bert-large":
        return BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    if key == "distilbert-base":
        return DistilBertConfig()
    if key == "minilm-l6":
        from lightft.models import embedded_model_path

        return BertConfig.from_json_file(str(embedded_model_path("minilm-l6") / "config.json"))
    raise ValueError(f"unknown architecture {name!r}; accepted: {sorted(ARCHITECTURES)}")


def build_encoder(name_or_config: Any, *, with_head: bool = False, num_labels: int = 2, seed: int = 0) -> nn.Module:
    """An encoder with random weights, built from a named architecture or a config, offline.

    Args:
        name_or_config: a name from :data:`ARCHITECTURES` or a ``BertConfig`` / ``DistilBertConfig``.
        with_head: ``False`` gives the bare encoder (``BertModel``, with its pooler, or
            ``DistilBertModel``), whose output ``last_hidden_state`` has shape
            ``(batch, seq_len, hidden)``; ``True`` gives ``BertForSequenceClassification`` /
            ``DistilBertForSequenceClassification`` with ``num_labels`` outputs, shape ``(batch, num_labels)``.
        num_labels: classes of the head (only with ``with_head=True``).
        seed: seeds the random initialisation, so two builds are identical.

    The weights are random: use it for shapes, parameter counts, memory and timing, never for
    predictions. The model is returned in eval mode.
    """
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertModel,
    )

    if isinstance(name_or_config, str):
        config = architecture_config(name_or_config)
    elif isinstance(name_or_config, (BertConfig, DistilBertConfig)):
        config = name_or_config.__class__.from_dict(name_or_config.to_dict())  # a copy: num_labels is set below
    else:
        raise TypeError(
            f"build_encoder expects an architecture name ({', '.join(sorted(ARCHITECTURES))}) or a "
            f"BertConfig/DistilBertConfig, got {type(name_or_config).__name__}"
        )
    if not isinstance(with_head, bool):
        raise TypeError(f"with_head must be True or False, got {with_head!r}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    distil = isinstance(config, DistilBertConfig)
    if with_head:
        config.num_labels = num_labels
        cls = DistilBertForSequenceClassification if distil else BertForSequenceClassification
    else:
        cls = DistilBertModel if distil else BertModel
    torch.manual_seed(seed)
    return cls(config).eval()


def _bert_encoder(model: Any) -> nn.Module:
    """The ``BertModel`` inside ``model`` (itself, or ``model.bert``), or a TypeError saying what is accepted."""
    from transformers import BertModel, DistilBertModel, DistilBertPreTrainedModel

    accepted = ("a BERT-layout encoder: transformers.BertModel, or a Bert*For* model holding one in "
                "`.bert` (e.g. BertForSequenceClassification, BertForMaskedLM)")
    if isinstance(model, BertModel):
        return model
    if isinstance(model, nn.Module) and isinstance(getattr(model, "bert", None), BertModel):
        return model.bert
    if isinstance(model, (DistilBertModel, DistilBertPreTrainedModel)):
        raise TypeError(
            f"{type(model).__name__} is already in DistilBERT layout; bert_to_distilbert expects {accepted}"
        )
    raise TypeError(f"bert_to_distilbert expects {accepted}; got {type(model).__name__}")


def distilbert_config(bert_config: Any, **overrides):
    """The ``DistilBertConfig`` with the shapes of a BERT config (checked to be rewritable).

    Maps ``hidden_size -> dim``, ``num_hidden_layers -> n_layers``, ``num_attention_heads -> n_heads``,
    ``intermediate_size -> hidden_dim``, ``hidden_act -> activation``, the two dropout rates, the
    vocabulary, ``max_position_embeddings`` and ``pad_token_id``; ``overrides`` (e.g.
    ``num_labels=2``) are passed on to ``DistilBertConfig``.

    Raises:
        ValueError: a needed field is missing or invalid, or the BERT variant has no DistilBERT
            equivalent (a decoder or cross-attention, relative position embeddings, a LayerNorm
            epsilon other than DistilBERT's fixed ``1e-12``, no token-type embedding).
    """
    from transformers import DistilBertConfig
    from transformers.activations import ACT2FN

    missing = [f for f in _NEEDED_FIELDS if getattr(bert_config, f, None) is None]
    if missing:
        raise ValueError(
            f"the config lacks {', '.join(missing)}; bert_to_distilbert needs a BERT config with "
            f"{', '.join(_NEEDED_FIELDS)} (e.g. transformers.BertConfig or a BertModel's .config)"
        )
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "max_position_embeddings", "type_vocab_size"):
        value = getattr(bert_config, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{field} must be a positive integer, got {value!r}")
    if bert_config.hidden_size % bert_config.num_attention_heads:
        raise ValueError(
            f"config.hidden_size ({bert_config.hidden_size}) must be divisible by "
            f"config.num_attention_heads ({bert_config.num_attention_heads})"
        )
    act = bert_config.hidden_act
    if not isinstance(act, str) or act not in ACT2FN:
        raise ValueError(f"config.hidden_act must name an activation such as 'gelu', got {act!r}")
    if getattr(bert_config, "is_decoder", False) or getattr(bert_config, "add_cross_attention", False):
        raise ValueError("a BERT decoder (is_decoder / add_cross_attention) has no DistilBERT equivalent; "
                         "only bidirectional encoders can be rewritten")
    position_type = getattr(bert_config, "position_embedding_type", "absolute")
    if position_type not in (None, "absolute"):
        raise ValueError(f"config.position_embedding_type is {position_type!r}; DistilBERT has only absolute "
                         "learned position embeddings ('absolute')")
    eps = float(bert_config.layer_norm_eps)
    if abs(eps - DISTILBERT_LAYER_NORM_EPS) > 1e-15:
        raise ValueError(f"config.layer_norm_eps is {eps}; DistilBertModel hard-codes LayerNorm eps=1e-12, "
                         "so only BERT models with layer_norm_eps=1e-12 are rewritten exactly")
    settings = dict(
        vocab_size=bert_config.vocab_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=bert_config.num_hidden_layers,
        n_heads=bert_config.num_attention_heads,
        dim=bert_config.hidden_size,
        hidden_dim=bert_config.intermediate_size,
        dropout=getattr(bert_config, "hidden_dropout_prob", 0.1),
        attention_dropout=getattr(bert_config, "attention_probs_dropout_prob", 0.1),
        activation=act,
        initializer_range=getattr(bert_config, "initializer_range", 0.02),
        pad_token_id=getattr(bert_config, "pad_token_id", 0),
    )
    attn = getattr(bert_config, "_attn_implementation", None)
    if isinstance(attn, str):
        settings["attn_implementation"] = attn
    settings.update(overrides)
    return DistilBertConfig(**settings)


def distilbert_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a BERT-layout encoder renamed (and the token-type row folded) for ``DistilBertModel``.

    Returns new tensors (nothing is shared with ``model``), keyed as ``DistilBertModel.state_dict()``;
    the position table is ``position_embeddings.weight + token_type_embeddings.weight[0]``, shape
    ``(max_position_embeddings, hidden)``. See the module docstring for the full mapping.
    """
    bert = _bert_encoder(model)
    distilbert_config(bert.config)  # validates the fields before any weight is touched
    src = bert.state_dict()
    out: dict[str, torch.Tensor] = {
        "embeddings.word_embeddings.weight": src["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": (
            src["embeddings.position_embeddings.weight"] + src["embeddings.token_type_embeddings.weight"][0]
        ),
        "embeddings.LayerNorm.weight": src["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": src["embeddings.LayerNorm.bias"],
    }
    renames = {
        "attention.self.query": "attention.q_lin",
        "attention.self.key": "attention.k_lin",
        "attention.self.value": "attention.v_lin",
        "attention.output.dense": "attention.out_lin",
        "attention.output.LayerNorm": "sa_layer_norm",
        "intermediate.dense": "ffn.lin1",
        "output.dense": "ffn.lin2",
        "output.LayerNorm": "output_layer_norm",
    }
    for i in range(bert.config.num_hidden_layers):
        for old, new in renames.items():
            for part in ("weight", "bias"):
                out[f"transformer.layer.{i}.{new}.{part}"] = src[f"encoder.layer.{i}.{old}.{part}"]
    return {name: tensor.detach().clone() for name, tensor in out.items()}


def bert_to_distilbert(model: nn.Module, num_labels: int | None = None, *, seed: int = 0) -> nn.Module:
    """Rewrite a BERT-layout encoder into DistilBERT layout, exactly.

    Args:
        model: a ``transformers.BertModel``, or a BERT model with a head that holds one in ``.bert``
            (``BertForSequenceClassification``, ``BertForMaskedLM``, ...). Only the encoder is used.
        num_labels: ``None`` (default) returns a ``DistilBertModel``. An integer returns a
            ``DistilBertForSequenceClassification`` whose encoder holds the rewritten weights and whose
            head (``pre_classifier``, ReLU, ``classifier``) is freshly initialised, seeded by ``seed``.
        seed: seeds the initialisation before the weights are copied in (and thus the new head).

    Returns:
        The DistilBERT model, on the same device and in the same dtype and train/eval mode as
        ``model``. For single-segment input its ``last_hidden_state``, shape ``(batch, seq_len,
        hidden)``, equals the BERT encoder's at every non-padding token (up to float rounding).

    Heads are never carried over: BERT's classifier reads the *pooler* output (dense + tanh on
    ``[CLS]``), DistilBERT's reads ``[CLS]`` through ``pre_classifier`` + ReLU, so a trained BERT
    head has no exact DistilBERT equivalent. Rewrite first, then fine-tune.

    Raises:
        TypeError: ``model`` is not BERT-layout (e.g. already a ``DistilBertModel``, or an ``nn.Linear``).
        ValueError: its config lacks a needed field or describes a variant DistilBERT cannot express
            (see :func:`distilbert_config`); ``num_labels`` is not a positive integer or ``None``.
    """
    from transformers import DistilBertForSequenceClassification, DistilBertModel

    bert = _bert_encoder(model)
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"num_labels must be a positive integer or None (the bare encoder), got {num_labels!r}")
    extra = {} if num_labels is None else {"num_labels": num_labels}
    config = distilbert_config(bert.config, **extra)
    weights = distilbert_state_dict(bert)
    reference = next(bert.parameters())
    torch.manual_seed(seed)
    if num_labels is None:
        out = DistilBertModel(config)
        out.load_state_dict(weights, strict=True)
    else:
        out = DistilBertForSequenceClassification(config)
        out.distilbert.load_state_dict(weights, strict=True)
    return out.to(device=reference.device, dtype=reference.dtype).train(model.training)


def _distilbert_tokenizer(tokenizer: Any):
    from transformers import DistilBertTokenizer

    if isinstance(tokenizer, DistilBertTokenizer):
        return tokenizer
    vocab = getattr(tokenizer, "get_vocab", None)
    if vocab is None:
        raise TypeError(f"tokenizer must be a WordPiece (BERT) tokenizer, got {type(tokenizer).__name__}")
    return DistilBertTokenizer(
        vocab=dict(tokenizer.get_vocab()),
        do_lower_case=getattr(tokenizer, "do_lower_case", True),
        tokenize_chinese_chars=getattr(tokenizer, "tokenize_chinese_chars", True),
        strip_accents=getattr(tokenizer, "strip_accents", None),
        model_max_length=getattr(tokenizer, "model_max_length", 512),
    )


def save_as_distilbert(
    folder: str | os.PathLike,
    model: str | os.PathLike | nn.Module = "minilm-l6",
    *,
    num_labels: int = 2,
    labels: list[str] | None = None,
    tokenizer: Any = None,
    seed: int = 0,
) -> Path:
    """Save a BERT-layout encoder as a ``DistilBertForSequenceClassification`` with a DistilBERT tokenizer.

    Afterwards, offline::

        DistilBertTokenizerFast.from_pretrained(folder)
        DistilBertForSequenceClassification.from_pretrained(folder)   # reads model.safetensors

    Args:
        folder: where to write ``config.json``, ``model.safetensors`` and the tokenizer files.
        model: ``"minilm-l6"`` (default), a saved folder or hub name (loaded with
            :func:`lightft.load_model`), or a BERT-layout module (see :func:`bert_to_distilbert`).
        num_labels, labels: size (and optional class names) of the new, randomly initialised head.
        tokenizer: the WordPiece tokenizer to save with it; default: the one of ``model`` when it is a
            name or folder. It is saved as a ``DistilBertTokenizer`` with the same vocabulary and settings.
        seed: seeds the new head.

    Returns:
        The folder, as a ``Path``.
    """
    from lightft.models import quiet_transformers, load_model, load_tokenizer

    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path, got {type(folder).__name__}")
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) < 2:
            raise ValueError(f"labels needs at least two class names, got {labels}")
        num_labels = len(labels)
    if isinstance(model, (str, os.PathLike)):
        source = load_model(model, num_labels=None)
        if tokenizer is None:
            tokenizer = load_tokenizer(model)
    elif isinstance(model, nn.Module):
        source = model
        if tokenizer is None:
            raise ValueError("pass tokenizer= (the WordPiece tokenizer of this model) when model is a module; "
                             "with a model name or folder it is found automatically")
    else:
        raise TypeError(f"model must be a model name, a folder or a BERT-layout nn.Module, got {type(model).__name__}")
    out = bert_to_distilbert(source, num_labels=num_labels, seed=seed).eval()
    if labels is not None:
        out.config.id2label = dict(enumerate(labels))
        out.config.label2id = {name: i for i, name in enumerate(labels)}
    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        out.save_pretrained(path)  # transformers 5 always writes model.safetensors
        _distilbert_tokenizer(tokenizer).save_pretrained(path)
    return path
