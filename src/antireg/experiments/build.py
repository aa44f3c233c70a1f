"""Building and training a run: data → split → model → λ → composed step → trainer → metrics.

A run is prepared (:func:`prepare`), trained, and summed up (:func:`finish`) by the
same code whichever trainer runs it: :func:`train_run` trains one run with
:func:`antireg.train.fit`, :func:`train_group` trains runs of one
:func:`~antireg.experiments.grid.group_key` as one stacked model
(:mod:`antireg.vectorised`). Nothing here writes: a run's outputs go back to the sweep,
which stores them (:mod:`antireg.experiments.storage`).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from antireg import lam, spectral
from antireg.calibration import classification_metrics, reliability_diagram
from antireg.data import Dataset, Split, load_dataset, make_split
from antireg.errors import ConfigError
from antireg.experiments.config import ExperimentCfg, memory_bytes
from antireg.experiments.grid import RunSpec, group_key
from antireg.metrics import regression_metrics
from antireg.models import flatten_parameters, make_model
from antireg.ntk import ntk_spectrum
from antireg.optimizers import make_optimizer
from antireg.penalty import ProximityPenalty
from antireg.probes import model_probes
from antireg.rules import make_rule
from antireg.safeguards import GradClip, TrustRegion
from antireg.step import TrainStep
from antireg.train import FitResult, LossFn, cross_entropy, fit, squared_error
from antireg.vectorised import fit_stacked

RunOutput = tuple[dict, list[dict], dict]  # a trained run's metrics, per-epoch log and artefacts


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


# Bytes of training state per parameter: the weights, their gradient, Adam's two moments,
# the trust region's θ₀, the best-validation copy, and room for temporaries.
_BYTES_PER_PARAMETER = 4 * 8


def check_model_fits(cfg: ExperimentCfg, spec: RunSpec, data_dir: str | Path, at_once: int) -> None:
    """Build the model without memory (torch's meta device) to count its parameters, and
    refuse, naming the keys, a model that cannot be built for this data or whose
    ``at_once`` runs training together would not fit in half of this machine's memory."""
    ds, m = dataset_for(spec, data_dir), cfg.model
    out_dim = 1 if ds.task == "regression" else int(ds.n_classes or ds.y.max() + 1)
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in make_model(m.kind, tuple(ds.X.shape[1:]), out_dim, m.width, m.depth,
                                                       m.activation).parameters())  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"model: {exc}; change model.kind, model.width or model.depth") from None
    need, have = params * _BYTES_PER_PARAMETER * at_once, memory_bytes()
    if need > have // 2:
        raise ConfigError(
            f"model.width {m.width} and model.depth {m.depth} give {params:,} parameters per model: about "
            f"{need / 2**30:.3g} GiB for the {at_once} runs training at once, more than half of this machine's "
            f"{have / 2**30:.3g} GiB; lower model.width or model.depth or --jobs"
        )


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
    return lam.resolve(spec.schedule, spec.lambda0, spec.n_train, unit=spec.lambda0_unit, decay=spec.decay,
                       n0=spec.n0, kappa=spec.kappa, delta=spec.delta, eta=spec.spectral_eta, eigs=eigs)  # fmt: skip


def _tensors(split: Split) -> dict[str, torch.Tensor]:
    ydtype = torch.float32 if split.task == "regression" else torch.long
    return {
        name: torch.as_tensor(np.asarray(getattr(split, name)), dtype=torch.float32 if name[0] == "X" else ydtype)
        for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
    }


def _evaluate(spec: RunSpec, split: Split, model: torch.nn.Module, t: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Metrics on val and test (regression in original units), and artefacts: the raw
    test outputs (for the output-scale ratio; logits for classification) and the reliability diagram."""
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
    optimizer = make_optimizer(spec.optimizer, spec.optim, params)
    rule_params = dict(spec.rule_params)
    if spec.rule == "igr":  # IGR's step size h is the learning rate (a learned optimizer's step scale)
        rule_params.setdefault("lr", optimizer.param_groups[0]["lr"])
    penalty = ProximityPenalty(params, resolved.lambda_n, spec.center) if resolved.lambda_n else None
    theta0 = penalty.center if penalty is not None else None  # θ₀ held once when θ_c = θ₀
    step = TrainStep(
        model,
        optimizer,
        rule=make_rule(spec.rule, **rule_params),
        penalty=penalty,
        clip=GradClip(params, spec.grad_clip) if spec.grad_clip is not None else None,
        trust_region=TrustRegion(params, spec.trust_radius, spec.trust_factor, ref=theta0) if use_trust else None,
    )
    loss_fn = squared_error if split.task == "regression" else cross_entropy
    return Prepared(spec, split, t, model, step, loss_fn, resolved)


def format_params(params: dict) -> str:
    """A relative's hyperparameters as one readable, sortable cell: ``eps=0.01,gamma=0.1``."""
    return ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "-"


def finish(run: Prepared, result: FitResult, wall_s: float) -> RunOutput:
    """Metrics, per-epoch log and artefacts of a trained run (its model holds the best state)."""
    spec, step = run.spec, run.step
    for row in result.history:
        row["lambda"] = run.lam.lambda_n
    metrics, artefacts = _evaluate(spec, run.split, run.model, run.tensors)
    if spec.probes is not None:
        metrics.update(model_probes(run.model, run.loss_fn, *run.train, spec.probes.rho, spec.probes.ascent_steps))
    metrics.update(
        experiment=spec.experiment, dataset=spec.dataset, method=spec.method, ablation=spec.ablation,
        optimizer=spec.optimizer, seed=spec.seed, fraction=spec.fraction, n_train=spec.n_train,
        lambda0=spec.lambda0, lambda0_unit=spec.lambda0_unit, decay=spec.decay,
        rule_params=format_params(spec.rule_params), **run.lam.columns(),
        r_clip=step.clip.rate if step.clip else 0.0,
        r_proj=step.trust_region.rate if step.trust_region else 0.0,
        diverged=result.diverged, divergence=result.divergence, steps=result.steps,
        best_epoch=result.best_epoch, run_id=spec.run_id, condition_id=spec.condition_id,
        wall_s=wall_s,
    )  # fmt: skip
    return metrics, result.history, artefacts


def train_run(spec: RunSpec, data_dir: str | Path, device: str | torch.device = "cpu") -> RunOutput:
    """Train one run; return its metrics, per-epoch log and artefacts."""
    start = time.perf_counter()
    run = prepare(spec, data_dir, device)
    result = fit(
        run.model, run.step, run.loss_fn, run.train, run.val,
        epochs=spec.training.epochs, batch_size=spec.training.batch_size, generator=run.generator(),
        **spec.training.protocol(),
    )  # fmt: skip
    return finish(run, result, time.perf_counter() - start)


def train_group(specs: Sequence[RunSpec], data_dir: str | Path, device: str | torch.device = "cpu") -> list[RunOutput]:
    """Train runs of one :func:`~antireg.experiments.grid.group_key` together as one stacked
    model; the same outputs as :func:`train_run` for each (to float rounding). Each run's
    ``wall_s`` is its share of the group's time."""
    if len({group_key(s) for s in specs}) != 1 or group_key(specs[0]) is None:
        raise ValueError("train_group needs runs of one group_key (same data, size, model and optimizer; a "
                         "stackable rule)")  # fmt: skip
    start = time.perf_counter()
    runs = [prepare(spec, data_dir, device) for spec in specs]
    training = specs[0].training
    results = fit_stacked(
        [r.model for r in runs], [r.step for r in runs], runs[0].loss_fn, [r.train for r in runs],
        [r.val for r in runs], training.epochs, training.batch_size, [r.generator() for r in runs],
        **training.protocol(),
    )  # fmt: skip
    share = (time.perf_counter() - start) / len(runs)
    return [finish(r, res, share) for r, res in zip(runs, results)]
