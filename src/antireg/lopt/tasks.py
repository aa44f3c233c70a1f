"""Tasks for meta-training and evaluation: a model, a per-example loss, data.

A :class:`Task` evaluates its loss at explicit parameters (``torch.func.functional_call``),
so an unroll can differentiate through θ_t. Image tasks (``digits``, ``mnist_t10k``)
train on a random subset of the training pool of one fixed split
(``antireg.data.make_split``); meta-training sees only the training and validation
parts, so the test part is unseen data for evaluation. :func:`quadratic_task` gives
tiny least-squares problems (a quadratic in θ) for tests.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from antireg.data import load_dataset, make_split
from antireg.models import make_model
from antireg.train import LossFn, cross_entropy, squared_error

Params = dict[str, torch.Tensor]
ModelKind = Literal["mlp", "mlp_relu", "cnn"]
# The paper's optimizees: "MLP" (a smooth activation; tanh here), "MLP-ReLU", a small CNN.
MODEL_KINDS: dict[str, tuple[str, str]] = {"mlp": ("mlp", "tanh"), "mlp_relu": ("mlp", "relu"), "cnn": ("cnn", "relu")}


@dataclass
class Task:
    """``model`` holds the architecture (its parameters at build time are θ₀);
    ``parts`` maps "train", "val", "test" to (X, y); ``loss_fn`` gives per-example losses."""

    name: str
    model: nn.Module
    loss_fn: LossFn
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]]
    batch_size: int | None = None  # None: full batch

    def __post_init__(self) -> None:
        # θ₀ kept apart: code that needs a module at some θ (the gradient rules) overwrites the model's parameters.
        self.theta0 = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def init_params(self) -> Params:
        """A copy of θ₀."""
        return {n: p.clone() for n, p in self.theta0.items()}

    def batch(self, generator: torch.Generator, part: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """A minibatch drawn with replacement, or the whole part when it is no larger than the batch size."""
        X, y = self.parts[part]
        if self.batch_size is None or self.batch_size >= len(y):
            return X, y
        idx = torch.randint(len(y), (self.batch_size,), generator=generator)
        return X[idx], y[idx]

    def losses(self, params: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Per-example losses at θ = ``params``."""
        X, y = batch
        return self.loss_fn(functional_call(self.model, params, (X,)), y)

    def loss(self, params: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.losses(params, batch).mean()


@dataclass(frozen=True)
class TaskSpec:
    """One image task: data set, optimizee, hidden width, training-subset size."""

    dataset: str
    model: ModelKind
    width: int
    n_train: int
    depth: int = 1
    batch_size: int | None = 64


@lru_cache(maxsize=4)
def _pool(dataset: str, data_dir: str | None, split_seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The standardised train/val/test parts of one data set, as tensors (cached: loading MNIST takes a second)."""
    split = make_split(load_dataset(dataset, data_dir), seed=split_seed)
    if split.task != "classification":
        raise ValueError(f"learned-optimizer tasks are classification; {dataset!r} is {split.task}")
    parts = {part: (getattr(split, f"X_{part}"), getattr(split, f"y_{part}")) for part in ("train", "val", "test")}
    return {k: (torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)) for k, (X, y) in parts.items()}


def load_pools(specs: list[TaskSpec], data_dir: str | Path | None = None, split_seed: int = 0) -> None:
    """Load every data set ``specs`` use, so a missing file fails now rather than minutes into a run."""
    for dataset in sorted({s.dataset for s in specs}):
        _pool(dataset, None if data_dir is None else str(data_dir), split_seed)


def build_task(spec: TaskSpec, seed: int, data_dir: str | Path | None = None, split_seed: int = 0) -> Task:
    """``spec`` with initialisation and training subset drawn from ``seed``; val and test parts are the pool's."""
    parts = dict(_pool(spec.dataset, None if data_dir is None else str(data_dir), split_seed))
    X, y = parts["train"]
    if spec.n_train > len(y):
        raise ValueError(f"n_train={spec.n_train} exceeds the {len(y)} training examples of {spec.dataset}")
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[: spec.n_train]
    parts["train"] = (X[idx], y[idx])
    kind, activation = MODEL_KINDS[spec.model]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model(kind, tuple(X.shape[1:]), int(y.max()) + 1, spec.width, spec.depth, activation)
    name = f"{spec.dataset}/{spec.model}-w{spec.width}-n{spec.n_train}"
    return Task(name, model, cross_entropy, parts, spec.batch_size)


def sample_task(specs: list[TaskSpec], rng: random.Random, data_dir: str | Path | None, split_seed: int) -> Task:
    """A random spec from ``specs`` with a fresh random initialisation and subset."""
    return build_task(rng.choice(specs), rng.randrange(2**31), data_dir, split_seed)


def quadratic_task(seed: int, dim: int = 8, cond: float = 20.0, dtype: torch.dtype = torch.float64) -> Task:
    """Least squares ½‖Xw + b − y‖²/n on n = 4·dim noise-free points, a quadratic in θ = (w, b).

    X's singular values are spaced geometrically so that XᵀX/n has condition number ≈ ``cond``.
    """
    gen = torch.Generator().manual_seed(seed)
    n = 4 * dim
    q, _ = torch.linalg.qr(torch.randn(n, dim, generator=gen, dtype=dtype))
    scales = torch.logspace(0, -0.5 * math.log10(cond), dim, dtype=dtype) * math.sqrt(n)
    X = q * scales
    y = X @ torch.randn(dim, generator=gen, dtype=dtype) + torch.randn((), generator=gen, dtype=dtype)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model("linear", dim).to(dtype)
    data = (X, y)
    return Task(f"quadratic-{seed}", model, squared_error, {"train": data, "val": data, "test": data})
