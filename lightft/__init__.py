"""lightft: the helper package of the book *Lightweight fine-tuning of transformer language models*.

The modules follow the book's parts; each names its chapter in its docstring:

* Foundations: :mod:`~lightft.attention` (the formula, multi-head attention), :mod:`~lightft.architectures`
  (BERT, DistilBERT, MiniLM from configs), :mod:`~lightft.memory` (what training costs in memory),
  :mod:`~lightft.latency` (inference latency)
* The fine-tune: :mod:`~lightft.data`, :mod:`~lightft.models`, :mod:`~lightft.train`
* Strategies: :mod:`~lightft.strategies` (freezing, LoRA, int8, distillation), :mod:`~lightft.measure`
  (throughput, FLOP/s, MFU)
* Evaluation: :mod:`~lightft.metrics` (from predictions), :mod:`~lightft.evaluation` (cross-validation),
  :mod:`~lightft.baselines`
* Large language models: :mod:`~lightft.llm` (the embedded SmolLM2, generation, SFT), :mod:`~lightft.lora`
  (LoRA by hand)
* Applications: :mod:`~lightft.sentiment`, :mod:`~lightft.imbalance`, :mod:`~lightft.retrieval`,
  :mod:`~lightft.translation`
* The build: :mod:`~lightft.budgets` (``LIGHTFT_BUDGET=book|smoke``), :mod:`~lightft.environment`,
  :mod:`~lightft.hub`; shared by all: :mod:`~lightft.checks` (argument checks), :mod:`~lightft.timing`
  (one timer, one peak-memory probe)

``lightft.NAME`` gives the names below (the README's API table lists them); everything else is
``lightft.MODULE.NAME``. Importing lightft is cheap: names and modules are imported on first use
(PEP 562), so ``import lightft`` and ``python -m lightft --help`` load neither torch nor any data.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The exported names, by the module that defines them. ``__all__`` is derived from this one list.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "attention": ("scaled_dot_product_attention", "MultiHeadSelfAttention", "causal_mask", "padding_mask",
                  "capture_attention", "plot_attention"),
    "architectures": ("build_encoder", "architecture_config", "bert_to_distilbert"),
    "memory": ("footprint", "activation_bytes"),
    "data": ("load_dataset", "split_summary", "DataFileError"),
    "models": ("load_model", "load_tokenizer", "count_parameters", "parameter_breakdown"),
    "train": ("finetune", "FinetuneResult", "predict", "resolve_precision"),
    "metrics": ("classification_metrics", "confusion_matrix", "paired_bootstrap", "mcnemar"),
    "evaluation": ("cross_validate",),
    "llm": ("load_llm", "generate", "chat", "classify_with_llm", "sft_examples", "train_sft"),
    "lora": ("LoRALinear", "add_lora", "merge_lora"),
    "budgets": ("budget", "sized", "verdict", "build_note"),
    "environment": ("hardware_summary", "library_versions"),
    "hub": ("hub_reachable", "HubUnreachableError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)
_SUBMODULES = {"architectures", "attention", "baselines", "book", "budgets", "checks", "data", "environment",
               "evaluation", "hub", "imbalance", "latency", "llm", "lora", "measure", "memory", "metrics",
               "models", "retrieval", "sentiment", "strategies", "timing", "train", "translation"}


def __getattr__(name: str):
    if name in _SUBMODULES:  # lightft.strategies etc. without an explicit import
        return importlib.import_module(f"lightft.{name}")
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'lightft' has no attribute {name!r} (the exported names are "
                             "lightft.__all__; other names live in their module, e.g. lightft.strategies.apply_lora)")
    value = getattr(importlib.import_module(f"lightft.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
