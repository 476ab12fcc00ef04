"""lightft.imbalance: balanced class weights and the weighted cross-entropy for finetune."""

import math

import pytest
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from lightft.imbalance import class_weights, weighted_cross_entropy


def test_class_weights_are_n_over_k_times_count():
    weights = class_weights([0, 0, 0, 1])  # n = 4, K = 2, n_0 = 3, n_1 = 1
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 2])
    # every class then carries the same total weight: 3 * 2/3 = 1 * 2
    assert 3 * weights[0].item() == pytest.approx(weights[1].item())


def test_class_weights_balanced_data_gives_ones_and_refuses_missing_classes():
    assert class_weights([0, 1, 2, 2, 1, 0]).tolist() == pytest.approx([1, 1, 1])
    with pytest.raises(ValueError, match="never occur"):
        class_weights([0, 0, 2], num_labels=3)
    with pytest.raises(ValueError, match="num_labels"):
        class_weights([0, 1, 3], num_labels=3)
    with pytest.raises(ValueError):
        class_weights([])


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1])
    loss = weighted_cross_entropy([1.0, 3.0])(SequenceClassifierOutput(logits=logits), labels, num_items_in_batch=2)
    ce0 = math.log(1 + math.exp(-2))   # -log softmax([2, 0])[0]
    ce1 = math.log(2)
    assert loss.item() == pytest.approx((1 * ce0 + 3 * ce1) / 4, rel=1e-6)
    plain = weighted_cross_entropy([1.0, 1.0])({"logits": logits}, labels)
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


def test_weighted_cross_entropy_checks_shapes_and_values():
    with pytest.raises(ValueError, match="positive"):
        weighted_cross_entropy([1.0, 0.0])
    loss = weighted_cross_entropy([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="3 class weights"):
        loss(SequenceClassifierOutput(logits=torch.zeros(2, 2)), torch.tensor([0, 1]))


def test_weighted_loss_gives_gradient_to_logits():
    logits = torch.zeros(3, 3, requires_grad=True)
    weighted_cross_entropy(class_weights([0, 0, 1, 2]))(SequenceClassifierOutput(logits=logits), torch.tensor([0, 1, 2])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
