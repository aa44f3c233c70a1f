"""Models: a linear map, a configurable MLP and a small CNN for 32×32 images."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_model(
    kind: Literal["linear", "mlp", "cnn"],
    in_shape: int | tuple[int, ...],
    out_dim: int = 1,
    width: int = 64,
    depth: int = 2,
    activation: str = "relu",
) -> nn.Module:
    """``linear``: x ↦ Wx + b. ``mlp``: ``depth`` hidden layers of ``width`` units.
    ``cnn``: ``depth`` blocks conv3×3 → act → maxpool2 (32, 64, … channels), then a dense
    layer of ``width`` units; needs ``in_shape = (C, H, W)``. Inputs of any shape are
    flattened for the linear model and the MLP. Parameters share one flat buffer
    (:func:`flatten_parameters`)."""
    shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}")
    act = ACTIVATIONS[activation]
    if kind == "linear":
        model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), out_dim))
    elif kind == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        dims = [math.prod(shape)] + [width] * depth
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        model = nn.Sequential(*layers, nn.Linear(dims[-1], out_dim))
    elif kind == "cnn":
        if len(shape) != 3 or min(shape[1:]) < 2**depth:
            raise ValueError(f"cnn needs images (C, H, W) of side >= 2**depth, got shape {shape}, depth {depth}")
        layers, channels = [], shape[0]
        for i in range(depth):
            out = 32 * 2**i
            layers += [nn.Conv2d(channels, out, 3, padding=1), act(), nn.MaxPool2d(2)]
            channels = out
        side = (shape[1] // 2**depth) * (shape[2] // 2**depth)
        model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side, width), act(), nn.Linear(width, out_dim))
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected 'linear', 'mlp' or 'cnn'")
    flatten_parameters(model)
    return model


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """Move every parameter into one contiguous buffer (each parameter becomes a view
    of it) and return the buffer. Values are unchanged; whole-vector operations such
    as the trust-region projection then cost one kernel instead of one per tensor."""
    params = list(model.parameters())
    with torch.no_grad():
        flat = torch.cat([p.reshape(-1) for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
