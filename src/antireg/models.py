"""Models: a linear map and a configurable MLP."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_model(
    kind: Literal["linear", "mlp"],
    in_dim: int,
    out_dim: int = 1,
    width: int = 64,
    depth: int = 2,
    activation: str = "relu",
) -> nn.Module:
    """``linear``: x ↦ Wx + b. ``mlp``: ``depth`` hidden layers of ``width`` units."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind != "mlp":
        raise ValueError(f"unknown model kind {kind!r}; expected 'linear' or 'mlp'")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    if depth < 1 or width < 1:
        raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
    layers: list[nn.Module] = [nn.Flatten()]
    dims = [in_dim] + [width] * depth
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
