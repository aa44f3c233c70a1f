"""The trainer: epochs, per-epoch log, best-validation checkpoint, divergence stop.

It knows nothing of any method: AR, L2, SAM… all live in the :class:`TrainStep`
it is handed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from antireg.step import TrainStep

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ½(f(x) − y)², so the Hessian of the mean is JᵀJ/n (SPEC's λ units)."""
    return 0.5 * (out.reshape(y.shape) - y) ** 2


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example −log softmax(f(x))_y."""
    return F.cross_entropy(out, y, reduction="none")


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    steps: int = 0
    diverged: bool = False
    divergence: str = ""


def _finite_params(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# Why a run stopped, worded the same by every trainer (sequential and vectorised).
def bad_step_reason(step: int) -> str:
    return f"non-finite loss or gradient at step {step}"


def bad_params_reason(step: int) -> str:
    return f"non-finite parameters at step {step}"


def epoch_row(
    epoch: int, train_loss: float, val_loss: float, grad_norm: float, clips: int, projs: int, steps: int
) -> dict:
    """One line of the per-epoch log: the means of the epoch's per-step losses and
    gradient norms, its clip and projection events and its number of steps."""
    return {
        "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "grad_norm": grad_norm,
        "clip_events": clips, "proj_events": projs, "steps": steps,
    }  # fmt: skip


@torch.no_grad()
def mean_loss(model: nn.Module, loss_fn: LossFn, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    value = float(loss_fn(model(X), y).mean())
    model.train()
    return value


def fit(
    model: nn.Module,
    step: TrainStep,
    loss_fn: LossFn,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> FitResult:
    """Train for ``epochs``; restore the parameters of the best validation loss.

    ``batch_size=None`` is full-batch. A non-finite loss, gradient norm or
    parameter stops training and marks the run diverged (with reason and step).
    """
    X, y = train
    n = X.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    model.train()
    for epoch in range(epochs):
        # drawn on the CPU whatever the device, so every device sees the same batches
        order = torch.randperm(n, generator=generator).to(X.device) if bs < n else None
        losses, norms, clips, projs = [], [], 0, 0
        for start in range(0, n, bs):
            idx = order[start : start + bs] if order is not None else slice(None)
            xb, yb = X[idx], y[idx]
            info = step(lambda: loss_fn(model(xb), yb))
            result.steps += 1
            losses.append(info.loss)
            norms.append(info.grad_norm)
            clips += info.clipped
            projs += info.projected
            # grad_norm is NaN by design when clipping is off, so only trust it when measured
            bad_norm = step.clip is not None and not math.isfinite(info.grad_norm)
            if not math.isfinite(info.loss) or bad_norm:
                result.diverged, result.divergence = True, bad_step_reason(result.steps)
                break
        if not result.diverged and not _finite_params(model):
            result.diverged, result.divergence = True, bad_params_reason(result.steps)
        val_loss = mean_loss(model, loss_fn, *val) if not result.diverged else math.nan
        k = len(losses)
        result.history.append(epoch_row(epoch, sum(losses) / k, val_loss, sum(norms) / k, clips, projs, k))
        if result.diverged:
            break
        if val_loss < result.best_val_loss:
            result.best_val_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return result
