"""Learned optimizers against hand-designed ones on held-out tasks.

Every method trains the same task (same θ₀, training subset and batch order for
a seed) for ``steps`` steps, more than a meta-training unroll, on the plain
loss, through :class:`antireg.step.TrainStep`: a learned optimizer with the ERM
rule, SGD with momentum, Adam, and SAM (the SAM rule with SGD momentum). Then test
and validation accuracy, NLL and ECE, and the sharpness probes on the training
set. Baseline hyperparameters given as lists are chosen per task on mean
validation NLL over seeds, as the runner chooses λ₀; the summary reports mean and
95% CI over seeds (Student t).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from antireg.calibration import classification_metrics
from antireg.experiments.aggregate import _ci95
from antireg.lopt.config import BaselineCfg, EvalCfg
from antireg.lopt.io import load_lopt
from antireg.lopt.optimizer import LearnedOptimizer
from antireg.lopt.probes import sharpness_probes
from antireg.lopt.tasks import Task, build_task, load_pools
from antireg.rules import ERM, SAM, Rule
from antireg.step import TrainStep

PROBES = ["train_loss", "max_loss", "sharpness", "grad_norm", "surrogate_gap"]
METRICS = ["test_accuracy", "test_nll", "test_ece", "val_accuracy", "val_nll", *PROBES, "wall_s"]


@dataclass(frozen=True)
class Method:
    """An optimizer to compare: ``make(params)`` builds it, ``rule()`` its gradient rule; ``hyper`` labels it."""

    name: str
    make: Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
    rule: Callable[[], Rule] = ERM
    hyper: str = ""


def baseline_methods(name: str, cfg: BaselineCfg) -> list[Method]:
    """One method per point of the baseline's grid."""
    if cfg.kind == "adam":
        return [Method(name, partial(torch.optim.Adam, lr=lr), hyper=f"lr={lr:g}") for lr in cfg.lr]
    sgd = [(lr, partial(torch.optim.SGD, lr=lr, momentum=cfg.momentum)) for lr in cfg.lr]
    if cfg.kind == "sgd":
        return [Method(name, make, hyper=f"lr={lr:g}") for lr, make in sgd]
    return [Method(name, make, partial(SAM, rho), f"lr={lr:g},rho={rho:g}")
            for (lr, make), rho in itertools.product(sgd, cfg.rho)]  # fmt: skip


def learned_method(name: str, checkpoint: str | Path) -> Method:
    net = load_lopt(checkpoint)
    return Method(name, lambda ps: LearnedOptimizer(ps, net), hyper=f"checkpoint={Path(checkpoint).name}")


def checkpoint_path(ref: str, output_dir: str | Path) -> Path:
    """``ref`` if it is a file, else ``<output_dir>/lopt/<ref>.pt`` (where ``lopt train`` saves)."""
    path = Path(ref)
    return path if path.is_file() else Path(output_dir) / "lopt" / f"{path.name.removesuffix('.pt')}.pt"


def run_one(task: Task, method: Method, steps: int, seed: int, rho: float = 0.05, ascent_steps: int = 10,
            ece_bins: int = 15) -> dict[str, float]:  # fmt: skip
    """Train ``task`` from θ₀ with ``method`` on minibatches drawn from ``seed``; metrics and probes at the end."""
    model = task.model
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(task.theta0[name])
    step = TrainStep(model, method.make(model.parameters()), method.rule())
    generator = torch.Generator().manual_seed(seed)
    begin = time.perf_counter()
    for _ in range(steps):
        X, y = task.batch(generator)
        if not math.isfinite(step(lambda: task.loss_fn(model(X), y)).loss):
            break
    row: dict[str, float] = {"wall_s": time.perf_counter() - begin}
    theta = [p.detach() for p in model.parameters()]
    with torch.no_grad():
        scores = {part: model(task.parts[part][0]) for part in ("test", "val")}
    if not all(bool(torch.isfinite(t).all()) for t in [*theta, *scores.values()]):
        return row | {"diverged": True} | {m: np.nan for m in METRICS if m != "wall_s"}
    for part, s in scores.items():
        metrics = classification_metrics(s, task.parts[part][1], ece_bins, logits=True)
        row |= {f"{part}_{k}": metrics[k] for k in ("accuracy", "nll", "ece")}
    names = [n for n, _ in model.named_parameters()]
    probes = sharpness_probes(lambda th: task.loss(dict(zip(names, th)), task.parts["train"]), theta, rho, ascent_steps)
    row |= {"train_loss": probes.pop("loss"), **probes, "diverged": False}
    return row


def evaluate(
    cfg: EvalCfg,
    output_dir: str | Path,
    data_dir: str | Path | None = None,
    seeds: list[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per task × method × hyperparameter × seed."""
    load_pools(cfg.specs(), data_dir, cfg.split_seed)
    methods = [learned_method(name, checkpoint_path(ref, output_dir)) for name, ref in cfg.learned.items()]
    methods += [m for name, b in cfg.baselines.items() for m in baseline_methods(name, b)]
    rows = []
    for spec, seed in itertools.product(cfg.specs(), seeds or cfg.seeds):
        task = build_task(spec, seed, data_dir, cfg.split_seed)
        for method in methods:
            row = run_one(task, method, cfg.steps, seed, cfg.probes.rho, cfg.probes.ascent_steps, cfg.ece_bins)
            rows.append({"experiment": cfg.name, "dataset": spec.dataset, "task": task.name.split("/", 1)[1],
                         "method": method.name, "hyper": method.hyper, "seed": seed, "steps": cfg.steps,
                         **row})  # fmt: skip
            if progress is not None:
                progress(f"{task.name} seed {seed} {method.name} {method.hyper}: test acc {row['test_accuracy']:.4f}")
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per task × method: the hyperparameter with the lowest mean validation NLL, then mean and 95% CI over seeds."""
    rows = []
    for (dataset, task, method), group in df.groupby(["dataset", "task", "method"], sort=False):
        hyper = group.groupby("hyper")["val_nll"].mean().fillna(np.inf).idxmin()
        chosen = group[group["hyper"] == hyper]
        row = {"experiment": chosen["experiment"].iloc[0], "dataset": dataset, "task": task, "method": method,
               "hyper": hyper, "n_seeds": len(chosen), "n_diverged": int(chosen["diverged"].sum())}  # fmt: skip
        for m in METRICS:
            row[f"{m}_mean"] = chosen[m].mean()
            row[f"{m}_ci95"] = _ci95(chosen[m])
        rows.append(row)
    return pd.DataFrame(rows)


def write_results(df: pd.DataFrame, summary: pd.DataFrame, results_dir: str | Path, name: str) -> tuple[Path, Path]:
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs, summ = results_dir / f"{name}.csv", results_dir / f"{name}_summary.csv"
    df.to_csv(runs, index=False)
    summary.to_csv(summ, index=False)
    return runs, summ
