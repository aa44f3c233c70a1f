"""Empirical risk minimisation: the plain gradient of the mean loss."""

from __future__ import annotations

import torch

from antireg.rules.base import Batch, Grads, Rule


class ERM(Rule):
    """g = ∇L̂(θ)."""

    def gradient(self, batch: Batch) -> tuple[torch.Tensor, Grads]:
        return batch.grad()
