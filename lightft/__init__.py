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
* :mod:`lightft.budget`     the run's budget (``LIGHTFT_BUDGET=book|smoke``) that sizes every chapter
* :mod:`lightft.environment` the hardware and library versions a build ran on

Importing lightft is cheap: no data is read and no model is loaded until a function asks for it.
"""

from lightft.architectures import (
    ARCHITECTURES,
    architecture_config,
    bert_to_distilbert,
    build_encoder,
    save_as_distilbert,
)
from lightft.attention import (
    AttentionCost,
    CapturedAttention,
    MultiHeadSelfAttention,
    attention_cost,
    capture_attention,
    causal_mask,
    padding_mask,
    plot_attention,
    scaled_dot_product_attention,
    scaling_statistics,
)
from lightft.budget import BUDGETS, budget, build_note, sized, verdict
from lightft.data import EMBEDDED_DATASETS, DataFileError, load_dataset, split_summary
from lightft.environment import hardware_summary, library_versions, package_version
from lightft.evaluation import classification_metrics
from lightft.hub import HubUnreachableError, hub_reachable
from lightft.latency import LatencyResult, compare_latency, encoder_forward_flops, measure_latency
from lightft.memory import MemoryFootprint, activation_bytes, bert_activation_estimate, footprint
from lightft.models import (
    EMBEDDED_MODELS,
    count_parameters,
    embedded_model_path,
    load_model,
    load_tokenizer,
    parameter_breakdown,
)
from lightft.train import FinetuneResult, Prediction, finetune, predict, resolve_precision
from lightft.baselines import BaselineResult, embedding_baseline, encode_texts, majority_baseline, tfidf_baseline
from lightft.evaluation import (BootstrapResult, CalibrationResult, CrossValidationResult, McNemarResult, calibration,
    confusion_matrix, cross_validate, expected_calibration_error, mcnemar, paired_bootstrap, plot_confusion_matrix,
    plot_reliability)
from lightft.imbalance import class_weights, weighted_cross_entropy
from lightft.measure import (Throughput, batch_accuracy, measure_accuracy, measure_inference, measure_training,
    model_flops_utilisation, non_embedding_parameters, peak_matmul_flops, text_batches, training_flops_per_token)
from lightft.retrieval import (Passage, Question, Retriever, contrastive_finetune, embed, find_passage, load_questions,
    mean_pool, pseudo_queries, retrieval_metrics, split_book, split_chapter)
from lightft.sentiment import ScoringSpeed, SentimentScorer, model_size_bytes, time_scoring
from lightft.strategies import (accumulate_gradients, apply_lora, benchmark_strategies, bitfit, distill,
    distillation_loss, enable_gradient_checkpointing, format_benchmark, freeze_encoder, quantize_int8, saved_size,
    shallow_student)
from lightft.translation import (TRANSLATOR_CONFIGS, MultiHeadCrossAttention, Translator, TranslatorConfig,
    evaluate_translator, make_translation_splits, train_translator, translate)

__version__ = "0.1.0"

__all__ = [
    "BUDGETS",
    "budget",
    "build_note",
    "sized",
    "verdict",
    "BaselineResult",
    "embedding_baseline",
    "encode_texts",
    "majority_baseline",
    "tfidf_baseline",
    "BootstrapResult",
    "CalibrationResult",
    "CrossValidationResult",
    "McNemarResult",
    "calibration",
    "confusion_matrix",
    "cross_validate",
    "expected_calibration_error",
    "mcnemar",
    "paired_bootstrap",
    "plot_confusion_matrix",
    "plot_reliability",
    "class_weights",
    "weighted_cross_entropy",
    "Throughput",
    "batch_accuracy",
    "measure_accuracy",
    "measure_inference",
    "measure_training",
    "model_flops_utilisation",
    "non_embedding_parameters",
    "peak_matmul_flops",
    "text_batches",
    "training_flops_per_token",
    "Passage",
    "Question",
    "Retriever",
    "contrastive_finetune",
    "embed",
    "find_passage",
    "load_questions",
    "mean_pool",
    "pseudo_queries",
    "retrieval_metrics",
    "split_book",
    "split_chapter",
    "ScoringSpeed",
    "SentimentScorer",
    "model_size_bytes",
    "time_scoring",
    "accumulate_gradients",
    "apply_lora",
    "benchmark_strategies",
    "bitfit",
    "distill",
    "distillation_loss",
    "enable_gradient_checkpointing",
    "format_benchmark",
    "freeze_encoder",
    "quantize_int8",
    "saved_size",
    "shallow_student",
    "TRANSLATOR_CONFIGS",
    "MultiHeadCrossAttention",
    "Translator",
    "TranslatorConfig",
    "evaluate_translator",
    "make_translation_splits",
    "train_translator",
    "translate",
    "AttentionCost",
    "CapturedAttention",
    "attention_cost",
    "capture_attention",
    "plot_attention",
    "scaling_statistics",
    "package_version",
    "ARCHITECTURES",
    "FinetuneResult",
    "LatencyResult",
    "MemoryFootprint",
    "Prediction",
    "architecture_config",
    "bert_activation_estimate",
    "bert_to_distilbert",
    "build_encoder",
    "causal_mask",
    "classification_metrics",
    "compare_latency",
    "encoder_forward_flops",
    "finetune",
    "measure_latency",
    "padding_mask",
    "predict",
    "resolve_precision",
    "save_as_distilbert",
    "EMBEDDED_DATASETS",
    "EMBEDDED_MODELS",
    "DataFileError",
    "HubUnreachableError",
    "MultiHeadSelfAttention",
    "activation_bytes",
    "count_parameters",
    "embedded_model_path",
    "footprint",
    "hardware_summary",
    "hub_reachable",
    "library_versions",
    "load_dataset",
    "load_model",
    "load_tokenizer",
    "parameter_breakdown",
    "scaled_dot_product_attention",
    "split_summary",
]
