"""LoRA written by hand: a frozen linear layer plus a trainable low-rank update.

Chapter: "LoRA and QLoRA on an LLM" (checked there against peft, output for output).

``y = x W^T + b + (alpha / r) * dropout(x) A^T B^T`` with ``W`` (out, in) frozen, ``A`` (r, in) drawn
like peft's default (Kaiming-uniform) and ``B`` (out, r) zero, so training starts from the pretrained
model exactly. Merging folds ``(alpha / r) B A`` into ``W``: the merged layer costs nothing extra.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from lightft import checks


class LoRALinear(nn.Module):
    """``base(x) + scaling * B(A(dropout(x)))`` with ``base`` frozen; ``scaling = alpha / r``."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        checks.instance("base", base, nn.Linear, "an nn.Linear")
        checks.integer("r", r)
        self.base, self.r, self.scaling = base, r, alpha / r
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))     # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))    # (out, r): the update starts at 0
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x: (..., in) -> (..., out)
        return self.base(x) + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with ``W + scaling * B A``: the same outputs (without dropout), no extra cost."""
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.scaling * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer.to(self.base.weight.device)


def _replace(model: nn.Module, predicate, make) -> list[str]:
    names = [name for name, module in model.named_modules() if predicate(name, module)]
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, make(getattr(owner, child)))
    return names


def add_lora(model: nn.Module, target_modules: Sequence[str] = ("q_proj", "v_proj"), r: int = 8,
             alpha: float = 16, dropout: float = 0.0) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends in a target in :class:`LoRALinear`.

    Returns the wrapped names. Raises ``ValueError`` if a target matches no linear layer: a typo must
    not silently train nothing.
    """
    targets = checks.texts("target_modules", list(target_modules))
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = sorted(set(targets) - linear)
    if missing:
        raise ValueError(f"target_modules {missing} match no nn.Linear in the model; its linear layers: "
                         f"{sorted(linear)}")
    model.requires_grad_(False)
    return _replace(model, lambda n, m: isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets,
                    lambda m: LoRALinear(m, r, alpha, dropout))


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` by its merged ``nn.Linear`` (in place); returns ``model``."""
    _replace(model, lambda n, m: isinstance(m, LoRALinear), lambda m: m.merged())
    return model
