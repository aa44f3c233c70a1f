"""Flooding: keep the training loss hovering at a flood level b.

Ishida, Yamane, Sakai, Niu, Sugiyama (2020). Do We Need Zero Training Loss After
Achieving Zero Training Loss? ICML.
"""

from __future__ import annotations

import torch

from antireg.rules.base import Batch, Grads, Rule, mul


class Flooding(Rule):
    """L_flood = |L − b| + b, so g = sign(L − b)·∇L: descent above b, ascent below.

    ``per_example=True`` floods each example instead: mean |ℓᵢ − b| + b.
    The batch-level form uses the mean loss over the whole batch (all micro-batches).
    """

    def __init__(self, b: float, per_example: bool = False) -> None:
        if not b >= 0:
            raise ValueError(f"flood level b must be >= 0, got {b}")
        self.b = float(b)
        self.per_example = bool(per_example)

    def gradient(self, batch: Batch) -> tuple[torch.Tensor, Grads]:
        if self.per_example:
            return batch.grad(transform=lambda losses: (losses - self.b).abs() + self.b)
        loss, g = batch.grad()
        return loss, mul(g, float(torch.sign(loss - self.b)))
