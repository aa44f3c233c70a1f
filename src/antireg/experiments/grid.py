"""Planning, pure (no I/O): from a validated config to the grid of run specs, and from
run specs to the work items an executor trains.

A :class:`RunSpec` is a small immutable value holding everything one run needs.
Its id is a hash of its resolved content, so resume is "skip ids whose results
exist" and any executor produces the same files. A :class:`WorkItem` is one run, or
runs of one :func:`group_key` trained together as one stacked model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from antireg import lam
from antireg.errors import ConfigError
from antireg.optimizers import AnyOptimizerCfg, LearnedCfg
from antireg.experiments.config import (
    SAFEGUARDS_OFF,
    ExperimentCfg,
    ModelCfg,
    ProbesCfg,
    SplitCfg,
    TrainingCfg,
)


class RunSpec(BaseModel):
    """One training run, fully resolved. ``lambda0`` is signed (AR < 0 < L2), in units of
    ``lambda0_unit`` (see :class:`~antireg.experiments.config.ARCfg`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str
    dataset: str
    dataset_options: dict[str, Any]
    split: SplitCfg
    seed: int
    fraction: float
    n_train: int
    model: ModelCfg
    optimizer: str  # a name of the config's optimizers: its kind (antireg.optimizers.kind_of), maybe a label
    optim: AnyOptimizerCfg
    training: TrainingCfg
    method: str  # "erm" (λ = 0), "ar", a relative's rule name, or "ar+<rule>"
    ablation: str
    schedule: Literal["zero", "power_law", "constant", "dof_target"]
    lambda0: float
    decay: float = Field(serialization_alias="alpha")  # hashed under its old name: run ids keep
    n0: int
    center: Literal["zero", "init"]
    delta: float
    kappa: float | None
    grad_clip: float | None
    trust_radius: float | None
    trust_factor: float | None
    spectral_eta: float | None
    ntk: bool
    ece_bins: int
    rule: str = "erm"
    rule_params: dict[str, Any] = {}
    lambda0_unit: Literal["absolute", "bound"] = "absolute"  # of lambda0: 1, or the run's μ_min/n
    probes: ProbesCfg | None = None

    def _digest(self, fields: set[str] | None = None) -> str:
        dump = self.model_dump(mode="json", include=fields, by_alias=True)
        for path in LATER_FIELDS:  # left out at their defaults
            *parents, leaf = path.split(".")
            owner, model = dump, self
            for part in parents:
                owner, model = owner.get(part, {}), getattr(model, part)
            if leaf in owner and getattr(model, leaf) == type(model).model_fields[leaf].default:
                del owner[leaf]
        return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()

    @property
    def run_id(self) -> str:
        """Readable prefix + hash of the whole resolved spec."""
        return f"{self.method}-{self.ablation}-{self.optimizer}-f{self.fraction:g}-s{self.seed}-{self._digest()[:12]}"

    @property
    def condition_id(self) -> str:
        """Runs with equal condition ids share data, split, n, init and optimizer:
        the λ = 0 baseline of that condition is AR's reference for ρ."""
        return self._digest(CONDITION_FIELDS)[:16]


# Fields added after run ids were first written (dotted paths into the spec): left out of the
# hash at their default, so that the runs of existing configs keep their ids (and a resumed
# sweep its finished runs).
LATER_FIELDS = ("lambda0_unit", "probes", "training.replacement", "training.max_steps", "training.keep")
CONDITION_FIELDS = {
    "dataset", "dataset_options", "split", "seed", "fraction", "n_train",
    "model", "optimizer", "optim", "training", "ece_bins", "probes",
}  # fmt: skip


MAX_RUNS = 100_000  # a run spec takes a few KiB, its directory a few more: beyond this, split the config


def n_runs(cfg: ExperimentCfg) -> int:
    """How many runs :func:`expand` makes of ``cfg`` (at most: equal specs are merged),
    counted without making them."""
    def ar(ablation: str) -> int:
        schedule = "constant" if ablation == "constant_lambda" else cfg.ar.schedule
        lambdas = 1 if schedule == "dof_target" else len(cfg.ar.lambda0)
        return lambdas * (1 if schedule in ("constant", "dof_target") else len(cfg.ar.decay))

    relatives = sum(math.prod(len(v) for v in grid.values()) for grid in cfg.relatives.values())
    per_condition = int(cfg.add_baseline_zero) + sum(map(ar, cfg.ablations))
    per_condition += relatives * (1 + (ar("none") if cfg.relatives_with_ar else 0))
    return len(cfg.seeds) * len(cfg.fractions) * len(cfg.optimizers) * per_condition


def expand(cfg: ExperimentCfg, n_total: int) -> list[RunSpec]:
    """The full grid: seeds × fractions × optimizers × (baseline, ablations × λ₀ × decay)."""
    from antireg.data import n_train_for

    if (count := n_runs(cfg)) > MAX_RUNS:
        raise ConfigError(f"the grid has {count} runs, more than {MAX_RUNS}: use fewer seeds, fractions, λ₀, decays or "
                          "relatives' values, or split the sweep into several configs")

    sizes = {f: n_train_for(n_total, f, cfg.split.val_frac, cfg.split.test_frac) for f in cfg.fractions}
    n0 = cfg.ar.n0 or min(sizes.values())
    if cfg.ar.schedule == "dof_target" and ({"l2", "constant_lambda"} & set(cfg.ablations)):
        raise ConfigError("ablations 'l2' and 'constant_lambda' need ar.schedule power_law or constant, not dof_target")
    has_spectrum = cfg.model.kind == "linear" or (cfg.model.kind == "mlp" and cfg.ar.ntk)
    if cfg.ar.schedule == "dof_target" and not has_spectrum:
        raise ConfigError("ar.schedule dof_target needs a spectrum: use model.kind 'linear', or an mlp with ar.ntk: true")
    if cfg.ar.lambda0_unit == "bound" and not has_spectrum:
        raise ConfigError(
            "ar.lambda0_unit 'bound' needs a spectrum to measure λ₀ against: use model.kind 'linear', "
            "or an mlp with ar.ntk: true (or ar.lambda0_unit: absolute)"
        )
    if cfg.ar.lambda0_unit == "bound" and cfg.ar.schedule == "dof_target":
        raise ConfigError("ar.lambda0_unit 'bound' scales λ₀, which ar.schedule dof_target does not use; drop one")
    if cfg.ar.ntk and cfg.model.kind != "mlp":
        raise ConfigError(f"ar.ntk applies to model.kind 'mlp' (linear models use their design spectrum), not '{cfg.model.kind}'")
    sg = cfg.safeguards
    specs: list[RunSpec] = []
    for seed in cfg.seeds:
        for fraction in cfg.fractions:
            for opt_name, opt in cfg.optimizers.items():
                common = dict(
                    experiment=cfg.experiment, dataset=cfg.dataset.name, dataset_options=cfg.dataset.options,
                    split=cfg.split, seed=seed, fraction=fraction, n_train=sizes[fraction], model=cfg.model,
                    optimizer=opt_name, optim=opt, training=cfg.training, n0=n0, center=cfg.ar.center,
                    delta=cfg.ar.delta, kappa=cfg.ar.kappa, ntk=cfg.ar.ntk, ece_bins=cfg.evaluation.ece_bins,
                    probes=cfg.evaluation.probes,
                )  # fmt: skip
                if cfg.add_baseline_zero:
                    specs.append(RunSpec(
                        **common, method="erm", ablation="none", schedule="zero", lambda0=0.0, decay=0.0,
                        grad_clip=None, trust_radius=None, trust_factor=None, spectral_eta=None,
                    ))  # fmt: skip
                for ablation in cfg.ablations:
                    specs.extend(_ar_runs(cfg, common, ablation, sg))
                for rule, grid in cfg.relatives.items():
                    for params in _product(grid):
                        specs.append(RunSpec(
                            **common, method=rule, ablation="none", schedule="zero", lambda0=0.0, decay=0.0,
                            grad_clip=None, trust_radius=None, trust_factor=None, spectral_eta=None,
                            rule=rule, rule_params=params,
                        ))  # fmt: skip
                        if cfg.relatives_with_ar:
                            specs.extend(
                                s.model_copy(update={"method": f"ar+{rule}", "rule": rule, "rule_params": params})
                                for s in _ar_runs(cfg, common, "none", sg)
                            )
    return list({s.run_id: s for s in specs}.values())


def _product(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of a parameter grid, as dicts (one empty dict for no parameters)."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _ar_runs(cfg: ExperimentCfg, common: dict, ablation: str, sg) -> list[RunSpec]:
    schedule = "constant" if ablation == "constant_lambda" else cfg.ar.schedule
    lambdas = [0.0] if schedule == "dof_target" else cfg.ar.lambda0
    decays = [0.0] if schedule in ("constant", "dof_target") else cfg.ar.decay
    off = SAFEGUARDS_OFF.get(ablation, frozenset())
    return [
        RunSpec(
            **common, method="ar", ablation=ablation, schedule=schedule, lambda0=lam.signed(lam0, ablation == "l2"),
            decay=decay,
            lambda0_unit=cfg.ar.lambda0_unit,
            grad_clip=None if "grad_clip" in off else sg.grad_clip,
            trust_radius=None if "trust_region" in off else sg.trust_radius,
            trust_factor=None if "trust_region" in off else sg.trust_factor,
            spectral_eta=None if "spectral_clamp" in off else sg.spectral_eta,
        )  # fmt: skip
        for lam0 in lambdas
        for decay in decays
    ]


def select(specs: list[RunSpec], seeds=None, fractions=None, optimizers=None) -> list[RunSpec]:
    """The ``--only_*`` filters; ``None`` keeps everything."""
    return [
        s
        for s in specs
        if (seeds is None or s.seed in seeds)
        and (fractions is None or any(abs(s.fraction - f) < 1e-12 for f in fractions))
        and (optimizers is None or s.optimizer in optimizers)
    ]


MAX_GROUP = 64  # models per stacked work item: bounds its memory


def group_key(spec: RunSpec) -> str | None:
    """Runs with equal keys can be trained together as one stacked model: they share the
    data set, training size, architecture, optimizer, training settings and gradient rule
    (not the seed, λ, the rule's parameters or safeguards: ERM runs do not pay a relative's
    second pass). None for a run whose gradient rule does not stack
    (:func:`antireg.vectorised.stackable`), or whose optimizer is not SGD or Adam
    (a learned optimizer): it trains on its own."""
    from antireg.vectorised import stackable  # here: planning needs no torch until it batches

    if not stackable(spec.rule, spec.rule_params) or isinstance(spec.optim, LearnedCfg):
        return None
    return json.dumps({"rule": spec.rule, **spec.model_dump(mode="json", include=CONDITION_FIELDS - {"seed"})},
                      sort_keys=True)


class WorkItem(NamedTuple):
    """A unit of work for an executor: one run, or runs trained together as one stacked model."""

    specs: tuple[RunSpec, ...]
    vectorised: bool


def run_units(spec: RunSpec) -> int:
    """A run's rough training work, examples × epochs: what the pool balances and the dry
    run's time estimate scales by."""
    return spec.n_train * spec.training.epochs


def make_work(specs: list[RunSpec], todo: set[str], vectorise: bool = False, max_group: int = MAX_GROUP) -> list[WorkItem]:
    """Work items for the runs of ``specs`` whose ids are in ``todo``.

    Without ``vectorise``, one item per run. With it, the runs of each :func:`group_key` are
    cut into balanced batches of at most ``max_group``, and a batch with any unfinished
    run is an item. The batches come from the whole plan, never from what is left to do
    or from the number of workers: a run's numbers depend, in the last bits, on the batch
    it trains in (torch's reductions round by shape), so a fixed batch makes them the
    same whichever executor ran it and however often the sweep was resumed.

    Items come largest first, so that a pool's workers finish together rather than one
    training the biggest batch alone at the end; the order changes no run's numbers."""
    groups: dict[str, list[RunSpec]] = {}
    items = []
    for spec in specs:
        key = group_key(spec) if vectorise else None
        if key is not None:
            groups.setdefault(key, []).append(spec)
        elif spec.run_id in todo:
            items.append(WorkItem((spec,), False))
    for members in groups.values():
        size = math.ceil(len(members) / math.ceil(len(members) / max_group))
        batches = [tuple(members[i : i + size]) for i in range(0, len(members), size)]
        items += [WorkItem(batch, True) for batch in batches if any(s.run_id in todo for s in batch)]
    return sorted(items, key=lambda item: sum(map(run_units, item.specs)), reverse=True)
