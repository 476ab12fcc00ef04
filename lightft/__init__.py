"""lightft: the helper package of the book *Lightweight fine-tuning of transformer encoders*.

Each module is named after the idea it holds and names its chapter in its docstring:

* :mod:`lightft.attention`  scaled dot-product attention and multi-head self-attention
* :mod:`lightft.data`       the embedded datasets, user files and hub datasets, split the same way
* :mod:`lightft.models`     loading the embedded encoder or a hub model; counting parameters
* :mod:`lightft.memory`     what a model costs in memory: weights, gradients, optimizer, activations
* :mod:`lightft.environment` the hardware and library versions a build ran on

Importing lightft is cheap: no data is read and no model is loaded until a function asks for it.
"""

from lightft.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from lightft.data import EMBEDDED_DATASETS, DataFileError, load_dataset, split_summary
from lightft.environment import hardware_summary, library_versions
from lightft.hub import HubUnreachableError, hub_reachable
from lightft.memory import activation_bytes, footprint
from lightft.models import (
    EMBEDDED_MODELS,
    count_parameters,
    embedded_model_path,
    load_model,
    load_tokenizer,
    parameter_breakdown,
)

__version__ = "0.1.0"

__all__ = [
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
