"""Class imbalance: class weights and a class-weighted cross-entropy for :func:`lightft.finetune`.

Chapter: "Applications" (``book/applications.md``), multi-class text classification of tweets, where
the positive class is the smallest.

With :math:`n` training examples, :math:`K` classes and :math:`n_c` examples of class :math:`c`, the
"balanced" weight of class :math:`c` is :math:`w_c = n / (K n_c)` (scikit-learn's
``compute_class_weight("balanced")``): a class half as frequent as average weighs twice as much, so
every class contributes the same total weight to the loss. The weighted cross-entropy of a batch is

.. math:: L = \\frac{\\sum_i w_{y_i} \\, (-\\log p_i(y_i))}{\\sum_i w_{y_i}}.

``finetune(..., compute_loss_func=weighted_cross_entropy(class_weights(train_labels)))`` trains with it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["class_weights", "weighted_cross_entropy"]


def class_weights(labels: Sequence[int], num_labels: int | None = None) -> torch.Tensor:
    """Balanced class weights ``(num_labels,)``: :math:`w_c = n / (K n_c)` (float32).

    Args:
        labels: the training labels, class indices ``0..K-1``.
        num_labels: :math:`K`; inferred from the labels when omitted. Every class must occur.
    """
    from sklearn.utils.class_weight import compute_class_weight

    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("labels must be a non-empty 1-D sequence of class indices")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("labels must be non-negative integer class indices")
    k = int(num_labels) if num_labels is not None else int(y.max()) + 1
    counts = np.bincount(y, minlength=k)
    if len(counts) > k:
        raise ValueError(f"a label is >= num_labels={k}")
    if (counts == 0).any():
        raise ValueError(f"class(es) {np.flatnonzero(counts == 0).tolist()} never occur; a weight n/(K n_c) needs n_c > 0")
    weights = compute_class_weight("balanced", classes=np.arange(k), y=y)
    return torch.tensor(weights, dtype=torch.float32)


def weighted_cross_entropy(weights: torch.Tensor | Sequence[float]) -> Callable:
    """A loss for ``finetune(compute_loss_func=...)``: cross-entropy with class weights.

    Returns ``loss(outputs, labels, num_items_in_batch=None)``, the Hugging Face ``Trainer``'s
    signature: ``outputs.logits`` is ``(batch, K)`` and ``labels`` ``(batch,)``; the result is the
    weighted mean above (``num_items_in_batch`` is accepted and not needed: the weighted mean already
    normalises by the batch's total weight).
    """
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.dim() != 1 or weights.numel() < 2:
        raise ValueError(f"weights must be a 1-D tensor with one weight per class (>= 2), got shape {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights <= 0).any():
        raise ValueError("weights must be finite and positive")

    def loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if logits.shape[-1] != weights.numel():
            raise ValueError(f"the model has {logits.shape[-1]} classes but {weights.numel()} class weights were given")
        return nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1),
                                           weight=weights.to(logits.device))

    loss.weights = weights
    return loss
