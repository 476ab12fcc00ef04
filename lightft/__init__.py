"""lightft: the helper package of the book *Lightweight fine-tuning of transformer encoders*.

Each module is named after the idea it holds and names its chapter in its docstring:

* :mod:`lightft.attention`  scaled dot-product attention and multi-head self-attention
* :mod:`lightft.data`       the embedded datasets, user files and hub datasets, split the same way
* :mod:`lightft.models`     loading the embedded encoder or a hub model; counting parameters
* :mod:`lightft.memory`     what a model costs in memory: weights, gradients, optimizer, activations
* :mod:`lightft.architectures` bert-base/large, DistilBERT, MiniLM from configs; BERT -> DistilBERT
* :mod:`lightft.latency`    CPU/GPU inference latency, measured side by side
* :mod:`lightft.train`      the fine-tune (Hugging Face Trainer) and prediction
* :mod:`lightft.evaluation` metrics from predictions (scikit-learn)
* :mod:`lightft.measure`, :mod:`lightft.strategies` the strategies chapter: throughput, FLOP/s, LoRA, int8, distillation
* :mod:`lightft.baselines`  majority, TF-IDF and frozen-encoder baselines (evaluation chapter)
* :mod:`lightft.sentiment`, :mod:`lightft.imbalance`, :mod:`lightft.retrieval` the applications chapter
* :mod:`lightft.translation` the miniature translation Transformer
* :mod:`lightft.budgets`    the run's budget (``LIGHTFT_BUDGET=book|smoke``) that sizes every chapter
* :mod:`lightft.environment` the hardware and library versions a build ran on

Importing lightft is cheap: the names below are imported from their module on first use (PEP 562), so
``import lightft`` and ``python -m lightft --help`` load neither torch nor any data; no model is loaded
until a function asks for it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The public names, by the module that defines them (``lightft.X`` for each key). ``__all__`` is derived.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "architectures": ("architecture_config", "ARCHITECTURES", "bert_to_distilbert", "build_encoder",
        "save_as_distilbert"),
    "attention": ("attention_cost", "AttentionCost", "capture_attention", "CapturedAttention", "causal_mask",
        "MultiHeadSelfAttention", "padding_mask", "plot_attention", "scaled_dot_product_attention",
        "scaling_statistics"),
    "budgets": ("budget", "BUDGETS", "build_note", "sized", "verdict"),
    "data": ("DataFileError", "EMBEDDED_DATASETS", "load_dataset", "split_summary"),
    "environment": ("hardware_summary", "library_versions", "package_version"),
    "evaluation": ("BootstrapResult", "calibration", "CalibrationResult", "classification_metrics",
        "confusion_matrix", "cross_validate", "CrossValidationResult", "expected_calibration_error",
        "mcnemar", "McNemarResult", "paired_bootstrap", "plot_confusion_matrix", "plot_reliability"),
    "hub": ("hub_reachable", "HubUnreachableError"),
    "latency": ("compare_latency", "encoder_forward_flops", "LatencyResult", "measure_latency"),
    "memory": ("activation_bytes", "bert_activation_estimate", "footprint", "MemoryFootprint"),
    "models": ("count_parameters", "embedded_model_path", "EMBEDDED_MODELS", "load_model", "load_tokenizer",
        "parameter_breakdown"),
    "train": ("finetune", "FinetuneResult", "predict", "Prediction", "resolve_precision"),
    "baselines": ("BaselineResult", "embedding_baseline", "encode_texts", "majority_baseline", "tfidf_baseline"),
    "imbalance": ("class_weights", "weighted_cross_entropy"),
    "measure": ("batch_accuracy", "measure_accuracy", "measure_inference", "measure_training",
        "model_flops_utilisation", "non_embedding_parameters", "peak_matmul_flops", "text_batches",
        "Throughput", "training_flops_per_token"),
    "retrieval": ("contrastive_finetune", "embed", "find_passage", "load_questions", "mean_pool", "Passage",
        "pseudo_queries", "Question", "retrieval_metrics", "Retriever", "split_book", "split_chapter"),
    "sentiment": ("model_size_bytes", "ScoringSpeed", "SentimentScorer", "time_scoring"),
    "strategies": ("accumulate_gradients", "apply_lora", "benchmark_strategies", "bitfit", "distill",
        "distillation_loss", "enable_gradient_checkpointing", "format_benchmark", "freeze_encoder",
        "quantize_int8", "saved_size", "shallow_student"),
    "translation": ("evaluate_translator", "make_translation_splits", "MultiHeadCrossAttention",
        "train_translator", "translate", "Translator", "TRANSLATOR_CONFIGS", "TranslatorConfig"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:  # AttributeError also lets ``from lightft import measure`` find the submodule
        raise AttributeError(f"module 'lightft' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lightft.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
