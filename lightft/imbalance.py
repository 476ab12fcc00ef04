"""Class imbalance: class weights and a class-weighted cross-entropy for :func:`lightft.finetune`.

Chapter: "Applications" (3-class tweet sentiment, the positive class the smallest). With :math:`n_c` of
:math:`n` examples in class :math:`c` of :math:`K`, the "balanced" weight :math:`w_c = n / (K n_c)` gives
every class the same total weight; a batch's loss is :math:`L = \\sum_i w_{y_i} (-\\log p_i(y_i)) / \\sum_i w_{y_i}`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from lightft import checks
from lightft.metrics import as_labels


def class_weights(labels: Sequence[int], num_labels: int | None = None) -> torch.Tensor:
    """:math:`w_c`, shape ``(K,)`` float32 (``compute_class_weight``); ``K``: ``num_labels`` or max label + 1."""
    if (y := as_labels(labels, "labels")).size == 0:
        raise ValueError("labels is empty; pass the training labels")
    k = int(y.max()) + 1 if num_labels is None else checks.integer("num_labels", num_labels, int(y.max()) + 1)
    if (missing := np.flatnonzero(np.bincount(y, minlength=k) == 0)).size:
        raise ValueError(f"class(es) {missing.tolist()} never occur; a weight n/(K n_c) needs n_c > 0")
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(k), y=y), dtype=torch.float32)


def weighted_cross_entropy(weights: torch.Tensor | Sequence[float]) -> Callable:
    """``loss(outputs, labels, num_items_in_batch=None)`` (the ``Trainer``'s signature): the weighted mean
    :math:`L` of ``outputs["logits"]`` ``(batch, K)`` against ``labels`` ``(batch,)``, normalised by the
    batch's total weight (so ``num_items_in_batch`` is not needed). Train with it by
    ``finetune(..., compute_loss_func=weighted_cross_entropy(class_weights(train_labels)))``."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.dim() != 1 or weights.numel() < 2 or not torch.isfinite(weights).all() or (weights <= 0).any():
        raise ValueError(f"weights must be finite and positive, one per class (>= 2); got {weights.tolist()}")

    def loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"]   # a ModelOutput or a dict
        if logits.shape[-1] != weights.numel():
            raise ValueError(f"the model has {logits.shape[-1]} classes but {weights.numel()} class weights were given")
        return torch.nn.functional.cross_entropy(logits.float(), labels.view(-1), weight=weights.to(logits.device))

    return loss
