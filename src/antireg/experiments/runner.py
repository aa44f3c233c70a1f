"""One run: data → split → model → trainer → metrics + diagnostics → experiments/<run-id>/.

A run is prepared (:func:`prepare`), trained, and summed up (:func:`finish`) by the
same code whichever trainer runs it: :func:`train_run` trains one run with
:func:`antireg.train.fit`, :func:`train_group` trains a group of runs that share an
architecture, a training size and an optimizer as one batched model
(:mod:`antireg.vectorised`). Runs are claimed before they train and written through
:mod:`antireg.experiments.storage`, so each run trains in one process and a directory
named after a run id always holds a finished run.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from antireg import lam, spectral
from antireg.data import Dataset, Split, load_dataset, make_split
from antireg.errors import ConfigError
from antireg.experiments.grid import CONDITION_FIELDS, RunSpec
# finished_metrics is re-exported: aggregate reads it from here
from antireg.experiments.storage import claim_run, finished_metrics, is_done, write_run  # noqa: F401
from antireg.metrics import regression_metrics
from antireg.calibration import classification_metrics, reliability_diagram
from antireg.models import flatten_parameters, make_model
from antireg.ntk import ntk_spectrum
from antireg.penalty import ProximityPenalty
from antireg.rules import make_rule
from antireg.safeguards import GradClip, TrustRegion, spectral_clamp
from antireg.step import TrainStep
from antireg.train import FitResult, LossFn, cross_entropy, fit, squared_error
from antireg.vectorised import fit_stacked

@functools.lru_cache(maxsize=4)
def _dataset(name: str, options_json: str, data_dir: str) -> Dataset:
    return load_dataset(name, data_dir, **json.loads(options_json))


def cached_dataset(name: str, options: dict, data_dir: str | Path) -> Dataset:
    """``load_dataset``, read once per process for each (name, options, folder)."""
    return _dataset(name, json.dumps(options, sort_keys=True), str(data_dir))


def dataset_for(spec: RunSpec, data_dir: str | Path) -> Dataset:
    return cached_dataset(spec.dataset, spec.dataset_options, data_dir)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (an error when no CUDA device is visible), or ``auto`` (CUDA when present)."""
    if name not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"device must be cpu, cuda or auto, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA device is available; use --device cpu or auto")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def group_key(spec: RunSpec) -> str | None:
    """Runs with equal keys can be trained together as one batched model: they share the
    data set, training size, architecture, optimizer and training settings (not the seed,
    λ or safeguards). None for a run the vectorised trainer does not support (a relative's
    gradient rule: SAM, GR, …), which trains on its own."""
    if spec.rule != "erm":
        return None
    return json.dumps(spec.model_dump(mode="json", include=CONDITION_FIELDS - {"seed"}), sort_keys=True)


def spectrum(spec: RunSpec, model: torch.nn.Module, X_train: torch.Tensor) -> np.ndarray | None:
    """Nonzero eigenvalues μ of the matrix whose spectrum bounds λ, where one is known.

    Linear model: the Gram matrix of the design [X, 1] (the bias is penalised too, so
    no centring). MLP with ``ntk``: the empirical NTK at θ₀ (Jacot et al. 2018).
    """
    if spec.model.kind == "linear":
        X = X_train.reshape(len(X_train), -1).double().numpy()
        return spectral.gram_spectrum(np.hstack([X, np.ones((len(X), 1))]), fit_intercept=False)
    if spec.ntk:
        return ntk_spectrum(model, X_train)
    return None


def resolve_lambda(spec: RunSpec, eigs: np.ndarray | None) -> lam.ResolvedLambda:
    """The run's λ (:func:`antireg.lam.resolve`) from its spec and spectrum."""
    return lam.resolve(spec.schedule, spec.lambda0, spec.n_train, unit=spec.lambda0_unit, decay=spec.alpha,
                       n0=spec.n0, kappa=spec.kappa, delta=spec.delta, eta=spec.spectral_eta, eigs=eigs)  # fmt: skip


def _optimizer(spec: RunSpec, params) -> torch.optim.Optimizer:
    o = spec.optim
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)


def _tensors(split: Split) -> dict[str, torch.Tensor]:
    ydtype = torch.float32 if split.task == "regression" else torch.long
    return {
        name: torch.as_tensor(np.asarray(getattr(split, name)), dtype=torch.float32 if name[0] == "X" else ydtype)
        for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
    }


def _evaluate(spec: RunSpec, split: Split, model: torch.nn.Module, t: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Metrics on val and test (regression in original units), and artefacts: the raw
    test outputs (for ρ; logits for classification) and the reliability diagram."""
    metrics, artefacts = {}, {}
    with torch.no_grad():
        raw = {part: model(t[f"X_{part}"]).double().cpu().numpy() for part in ("val", "test")}
    for part in ("val", "test"):
        y = getattr(split, f"y_{part}")
        if split.task == "regression":
            values = regression_metrics(split.unscale_y(y), split.unscale_y(raw[part].ravel()))
        else:
            values = classification_metrics(raw[part], y, spec.ece_bins, logits=True)
        metrics.update({f"{part}_{k}": v for k, v in values.items()})
    artefacts["outputs_test"] = raw["test"]
    if split.task == "classification":
        rd = reliability_diagram(raw["test"], split.y_test, spec.ece_bins, logits=True)
        artefacts["reliability"] = {"bin_edges": rd["edges"].tolist(), **{
            k: [None if np.isnan(v) else float(v) for v in rd[k]] for k in ("confidence", "accuracy", "count")}}
    return metrics, artefacts


@dataclass
class Prepared:
    """A run ready to train: its split, tensors and model on the device, composed step and λ."""

    spec: RunSpec
    split: Split
    tensors: dict[str, torch.Tensor]
    model: torch.nn.Module
    step: TrainStep
    loss_fn: LossFn
    lam: lam.ResolvedLambda

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors["X_train"], self.tensors["y_train"]

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors["X_val"], self.tensors["y_val"]

    def generator(self) -> torch.Generator:
        """The run's own batch order, on the CPU whatever the device."""
        return torch.Generator().manual_seed(self.spec.seed)


def prepare(spec: RunSpec, data_dir: str | Path, device: str | torch.device = "cpu") -> Prepared:
    """Split, model at its seeded init, λ(n) and the composed step of one run.

    The model is built and its spectrum taken on the CPU, so every device starts from
    the same θ₀ and λ; then model and data move to ``device`` once.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    ds = dataset_for(spec, data_dir)
    split = make_split(ds, spec.seed, spec.fraction, spec.split.val_frac, spec.split.test_frac)
    t = _tensors(split)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        out_dim = 1 if split.task == "regression" else split.n_classes
        m = spec.model
        model = make_model(m.kind, tuple(split.X_train.shape[1:]), out_dim, m.width, m.depth, m.activation)
    resolved = resolve_lambda(spec, spectrum(spec, model, t["X_train"]))
    if device.type != "cpu":
        model.to(device)
        flatten_parameters(model)  # .to() gives each parameter its own storage again
    t = {name: v.to(device) for name, v in t.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    use_trust = spec.trust_radius is not None or spec.trust_factor is not None
    rule_params = dict(spec.rule_params)
    if spec.rule == "igr":  # IGR's step size h is the learning rate
        rule_params.setdefault("lr", spec.optim.lr)
    step = TrainStep(
        model,
        _optimizer(spec, params),
        rule=make_rule(spec.rule, **rule_params),
        penalty=ProximityPenalty(params, resolved.lambda_n, spec.center) if resolved.lambda_n else None,
        clip=GradClip(params, spec.grad_clip) if spec.grad_clip is not None else None,
        trust_region=TrustRegion(params, spec.trust_radius, spec.trust_factor) if use_trust else None,
    )
    loss_fn = squared_error if split.task == "regression" else cross_entropy
    return Prepared(spec, split, t, model, step, loss_fn, resolved)


def finish(run: Prepared, result: FitResult, wall_s: float) -> tuple[dict, list[dict], dict]:
    """Metrics, per-epoch log and artefacts of a trained run (its model holds the best state)."""
    spec, step = run.spec, run.step
    for row in result.history:
        row["lambda"] = run.lam.lambda_n
    metrics, artefacts = _evaluate(spec, run.split, run.model, run.tensors)
    metrics.update(
        experiment=spec.experiment, dataset=spec.dataset, method=spec.method, ablation=spec.ablation,
        optimizer=spec.optimizer, seed=spec.seed, fraction=spec.fraction, n_train=spec.n_train,
        lambda0=spec.lambda0, lambda0_unit=spec.lambda0_unit, alpha=spec.alpha,
        rule_params=format_params(spec.rule_params), **run.lam.columns(),
        r_clip=step.clip.rate if step.clip else 0.0,
        r_proj=step.trust_region.rate if step.trust_region else 0.0,
        diverged=result.diverged, divergence=result.divergence, steps=result.steps,
        best_epoch=result.best_epoch, run_id=spec.run_id, condition_id=spec.condition_id,
        wall_s=wall_s,
    )  # fmt: skip
    return metrics, result.history, artefacts


def train_run(spec: RunSpec, data_dir: str | Path, device: str | torch.device = "cpu") -> tuple[dict, list[dict], dict]:
    """Train one run; return its metrics, per-epoch log and artefacts."""
    start = time.perf_counter()
    run = prepare(spec, data_dir, device)
    result = fit(
        run.model, run.step, run.loss_fn, run.train, run.val,
        epochs=spec.training.epochs, batch_size=spec.training.batch_size, generator=run.generator(),
    )  # fmt: skip
    return finish(run, result, time.perf_counter() - start)


def train_group(
    specs: Sequence[RunSpec], data_dir: str | Path, device: str | torch.device = "cpu"
) -> list[tuple[dict, list[dict], dict]]:
    """Train runs of one :func:`group_key` together as one batched model; the same
    outputs as :func:`train_run` for each (to float rounding). Each run's ``wall_s``
    is its share of the group's time."""
    if len({group_key(s) for s in specs}) != 1 or group_key(specs[0]) is None:
        raise ValueError("train_group needs runs of one group_key (same data, size, model and optimizer; ERM rule)")
    start = time.perf_counter()
    runs = [prepare(spec, data_dir, device) for spec in specs]
    training = specs[0].training
    results = fit_stacked(
        [r.model for r in runs], [r.step for r in runs], runs[0].loss_fn, [r.train for r in runs],
        [r.val for r in runs], training.epochs, training.batch_size, [r.generator() for r in runs],
    )  # fmt: skip
    share = (time.perf_counter() - start) / len(runs)
    return [finish(r, res, share) for r, res in zip(runs, results)]


def format_params(params: dict) -> str:
    """A relative's hyperparameters as one readable, sortable cell: ``eps=0.01,gamma=0.1``."""
    return ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "-"


@functools.cache
def _keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse rather than hand it back to the kernel.

    Batched training allocates and frees tensors of a few MiB every step. By default
    glibc serves each from fresh pages (mmap, or a heap it has just trimmed), which the
    kernel must zero and fault in: a third of a vectorised step's time at small n. The
    same as running with ``MALLOC_MMAP_THRESHOLD_=32MiB MALLOC_TRIM_THRESHOLD_=512MiB``;
    it lasts for the process (mallopt cannot be undone), which is the sweep's own.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 512 << 20)
    libc.mallopt(m_mmap_threshold, 32 << 20)


@contextlib.contextmanager
def sweep_settings() -> Iterator[None]:
    """The settings a sweep's runs train under. One intra-op thread, so that results are
    bit-identical whichever executor (and however many workers) ran them; parallelism
    comes from the executor. And freed memory kept for reuse (:func:`_keep_freed_memory`)."""
    _keep_freed_memory()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Executed(NamedTuple):
    """What :func:`execute` or :func:`execute_group` did: the ids of the runs it trained
    and wrote, and of those it left to another process that holds their claims."""

    trained: list[str]
    busy: list[str]


def execute(spec: RunSpec, experiments_dir: str | Path, data_dir: str | Path, device: str = "cpu",
            wait: bool = False) -> Executed:
    """Train and write ``spec`` unless it is finished, or another process holds its claim
    (it is training the run now); with ``wait``, waits for that process instead, and
    trains the run if it did not finish it."""
    experiments_dir = Path(experiments_dir)
    if is_done(experiments_dir / spec.run_id):
        return Executed([], [])
    held = claim_run(experiments_dir, spec.run_id, block=wait)
    if held is None:
        return Executed([], [spec.run_id])
    with held:
        if is_done(experiments_dir / spec.run_id):  # finished by another process while we looked
            return Executed([], [])
        with sweep_settings():
            output = train_run(spec, data_dir, device)
        write_run(spec, experiments_dir, *output)
    return Executed([spec.run_id], [])


def execute_group(specs: Sequence[RunSpec], experiments_dir: str | Path, data_dir: str | Path, device: str = "cpu",
                  wait: bool = False) -> Executed:
    """Train ``specs`` as one batched model (:func:`train_group`) and write the runs not
    yet finished that this process could claim; those another process holds are left
    to it (with ``wait``, waited for: claims are taken in run-id order, so waiting
    sweeps never deadlock). All of the batch trains, finished or not: a run's last bits
    depend on the batch it trains in, so a resumed batch must be the batch it was."""
    experiments_dir = Path(experiments_dir)
    todo = sorted((s for s in specs if not is_done(experiments_dir / s.run_id)), key=lambda s: s.run_id)
    claims = {}
    try:
        for spec in todo:
            if (held := claim_run(experiments_dir, spec.run_id, block=wait)) is not None:
                claims[spec.run_id] = held
        mine = [s.run_id for s in todo if s.run_id in claims and not is_done(experiments_dir / s.run_id)]
        if mine:
            with sweep_settings():
                outputs = dict(zip([s.run_id for s in specs], train_group(specs, data_dir, device)))
            for spec in specs:
                if spec.run_id in mine:
                    write_run(spec, experiments_dir, *outputs[spec.run_id])
    finally:
        for held in claims.values():
            held.release()
    return Executed(mine, [s.run_id for s in todo if s.run_id not in claims])
