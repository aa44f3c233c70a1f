"""The experiment config: a YAML file validated by a strict pydantic schema.

Unknown keys and wrong types are rejected with the key's path and the allowed
values. YAML is read by a safe loader that also refuses anchors and aliases (a
few hundred bytes of aliases can expand to gigabytes: "billion laughs") and nesting
deeper than :data:`MAX_DEPTH`; nothing in a config needs either. Every number is
bounded and finite, so that no accepted value fails once runs have trained; the one
infinity with a meaning, ``grad_clip: .inf``, is "no clipping" (as ``null``).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from antireg import defaults
from antireg.errors import ConfigError  # noqa: F401 - re-exported: its old home
from antireg.optimizers import BIG, OptimizerCfg, Optimizers  # noqa: F401 - OptimizerCfg re-exported: its old home
from antireg.spectral import ETA

# The safeguards each safeguard ablation switches off for its AR runs; the other two ablations
# change λ(n) instead: ``l2`` flips its sign, ``constant_lambda`` drops its decay.
SAFEGUARDS_OFF: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "no_trust_region": frozenset({"trust_region"}),
    "no_grad_clip": frozenset({"grad_clip"}),
    "no_spectral_clamp": frozenset({"spectral_clamp"}),
    "no_safeguards": frozenset({"trust_region", "grad_clip", "spectral_clamp"}),
}
ABLATIONS = (*SAFEGUARDS_OFF, "l2", "constant_lambda")
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
MAX_DEPTH = 20  # nesting levels of a config file
MAX_CONFIG_BYTES = 1 << 20
MAX_GRID = 10_000  # combinations of one relative's parameter grid
SEED_MAX = 2**32 - 1  # numpy and torch generators take any seed up to here


def memory_bytes() -> int:
    """This machine's physical memory (what the size checks measure against)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 << 30


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases and deep nesting."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name, <<) are not "
                                              "allowed in a config; write the values out", event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetCfg(_Strict):
    name: str
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "DatasetCfg":
        """A synthetic data set is generated in memory (float64 X and y): refuse one
        larger than a quarter of this machine's memory before anything is allocated."""
        n, d = self.options.get("n", 1000), self.options.get("d", 20)
        if self.name == "synthetic" and all(isinstance(v, int) and not isinstance(v, bool) for v in (n, d)):
            need, have = 8 * max(n, 0) * (max(d, 0) + 1), memory_bytes()
            if need > have // 4:
                raise ValueError(f"options n = {n} and d = {d} ask for {need / 2**30:.3g} GiB of data, more than a "
                                 f"quarter of this machine's {have / 2**30:.3g} GiB; lower dataset.options.n or d")
        return self


class SplitCfg(_Strict):
    val_frac: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    test_frac: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15

    @model_validator(mode="after")
    def _room_for_training(self) -> "SplitCfg":
        if self.val_frac + self.test_frac >= 1.0:
            raise ValueError("val_frac + test_frac must be < 1 to leave a training pool")
        return self


class ModelCfg(_Strict):
    """``width`` is the hidden width (MLP) or the dense layer after the convolutions (CNN)."""

    kind: Literal["linear", "mlp", "cnn"] = "mlp"
    width: Annotated[int, Field(ge=1, le=1 << 16)] = 64
    depth: Annotated[int, Field(ge=1, le=64)] = 2
    activation: Literal["relu", "tanh", "gelu"] = "relu"


class TrainingCfg(_Strict):
    """``epochs`` passes over the training set in batches of ``batch_size`` (null: full batch),
    drawn without replacement unless ``replacement``; ``max_steps`` ends training after that many
    steps (the learned optimizer's fixed budget T: epochs = ceil(T / steps per epoch)); ``keep``
    the parameters of the best validation loss (every sweep's default) or the last ones
    (:func:`antireg.train.fit_stepper`)."""

    epochs: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    batch_size: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    replacement: bool = False
    max_steps: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    keep: Literal["best", "last"] = "best"

    def protocol(self) -> dict[str, Any]:
        """The trainer's keyword options beside epochs and batch size."""
        return {"replacement": self.replacement, "max_steps": self.max_steps, "keep": self.keep}


class SafeguardsCfg(_Strict):
    """``null`` switches a safeguard off for every run; the ablations switch one off per run."""

    grad_clip: Annotated[float, Field(gt=0.0)] | None = defaults.GRAD_CLIP
    trust_radius: Annotated[float, Field(gt=0.0)] | None = None
    trust_factor: Annotated[float, Field(gt=0.0, le=BIG)] | None = defaults.TRUST_FACTOR
    spectral_eta: Annotated[float, Field(gt=0.0, lt=1.0)] | None = ETA

    @field_validator("grad_clip", mode="before")
    @classmethod
    def _inf_is_off(cls, v: Any) -> Any:
        """Clipping at an infinite norm never fires: the same runs as ``null`` (and the same ids)."""
        return None if isinstance(v, float) and v == math.inf else v


class ARCfg(_Strict):
    """λ(n) for AR is −|λ₀|·u(n)·(n₀/n)^decay (power_law); the ``l2`` ablation flips the sign.

    ``lambda0_unit`` sets the unit u(n) of λ₀: ``absolute`` (u = 1) or ``bound``, the
    spectral bound of the run itself, u(n) = μ_min/n with μ_min the smallest nonzero
    eigenvalue of its Gram or NTK matrix. So with ``bound`` and the constant schedule,
    λ₀ = c asks for λ(n) = −c·μ_min/n: c < 1 lies inside the safe region, c > 1 beyond it
    (where, without the spectral clamp, ½·MSE + λ·½‖θ‖² is unbounded below for a linear model).
    """

    schedule: Literal["power_law", "constant", "dof_target"] = "power_law"
    lambda0: list[Annotated[float, Field(gt=0.0, le=BIG)]] = [0.01]
    lambda0_unit: Literal["absolute", "bound"] = "absolute"
    decay: list[Annotated[float, Field(ge=0.0, le=100.0)]] = [1.0]  # exponents of (n₀/n); was ``alpha``
    n0: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    center: Literal["zero", "init"] = defaults.CENTER
    delta: Annotated[float, Field(gt=-1.0, le=BIG)] = 0.1
    kappa: Annotated[float, Field(gt=0.0, le=BIG)] | None = None
    ntk: bool = False  # MLPs: take the spectrum (clamp, df/n, dof_target) from the NTK at θ₀

    @model_validator(mode="before")
    @classmethod
    def _old_alpha_key(cls, data: Any) -> Any:
        """``ar.alpha``, the decay exponent's old name (also the ridge α's and optimizers'),
        is read as ``ar.decay``, with a one-line deprecation warning."""
        if isinstance(data, dict) and "alpha" in data:
            if "decay" in data:
                raise ValueError("give ar.decay only: ar.alpha is its old name")
            warnings.warn("config key ar.alpha is deprecated: rename it ar.decay (the decay exponent of λ(n))",
                          FutureWarning, stacklevel=2)
            data = {("decay" if k == "alpha" else k): v for k, v in data.items()}
        return data


class ProbesCfg(_Strict):
    """Sharpness probes of the trained model on its training set (:func:`antireg.probes.model_probes`):
    the loss's rise within a ball of radius ``rho``, found by ``ascent_steps`` steps of ascent."""

    rho: Annotated[float, Field(gt=0.0, le=BIG)] = 0.05
    ascent_steps: Annotated[int, Field(ge=1, le=10_000)] = 10


class EvaluationCfg(_Strict):
    ece_bins: Annotated[int, Field(ge=1, le=10_000)] = 15
    probes: ProbesCfg | None = None  # null: no probes (they cost a few passes per run)


class ExperimentCfg(_Strict):
    experiment: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    dataset: DatasetCfg
    split: SplitCfg = SplitCfg()
    fractions: Annotated[list[Fraction], Field(min_length=1)]
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=SEED_MAX)]], Field(min_length=1)]
    model: ModelCfg = ModelCfg()
    # name → settings; a name is a kind (sgd, adam, learned) with an optional _label (antireg.optimizers)
    optimizers: Optimizers
    training: TrainingCfg = TrainingCfg()
    evaluation: EvaluationCfg = EvaluationCfg()
    ar: ARCfg = ARCfg()
    safeguards: SafeguardsCfg = SafeguardsCfg()
    ablations: Annotated[list[Literal[ABLATIONS]], Field(min_length=1)] = ["none"]  # type: ignore[valid-type]
    add_baseline_zero: bool = True
    # relatives to compare, each a gradient rule with a grid of its parameters (a scalar is a
    # one-point grid), e.g. {sam: {rho: [0.01, 0.05]}, flooding: {b: [0.02]}}; chosen on validation
    relatives: dict[str, dict[str, Any]] = {}
    relatives_with_ar: bool = False  # also run AR (ablation none) combined with each relative
    # where runs train: cpu, cuda, or auto (CUDA when present); not part of a run's id
    device: Literal["cpu", "cuda", "auto"] = "auto"

    @field_validator("experiment")
    @classmethod
    def _not_an_output_name(cls, v: str) -> str:
        if v.endswith("_summary"):  # results/<E>_summary.csv is experiment E's summary
            raise ValueError(f"names ending in '_summary' are reserved (results/{v}.csv is the summary of "
                             f"experiment {v[: -len('_summary')]!r}); choose another name")
        return v

    @field_validator("relatives")
    @classmethod
    def _known_rules(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, list]]:
        """Every combination of every relative's grid builds its rule, so that no run fails
        at training time; values are numbers, booleans or strings, numbers finite."""
        from antireg.rules import RULES, make_rule

        grids = {}
        for name, params in v.items():
            if name == "erm" or name not in RULES:
                raise ValueError(f"unknown relative {name!r}; choose from {', '.join(r for r in RULES if r != 'erm')}")
            grids[name] = {k: val if isinstance(val, list) else [val] for k, val in params.items()}
            if any(not vals for vals in grids[name].values()):
                raise ValueError(f"relative {name!r}: every parameter needs at least one value")
            for k, vals in grids[name].items():
                for val in vals:
                    if not isinstance(val, (bool, int, float, str)) or isinstance(val, float) and not math.isfinite(val):
                        raise ValueError(f"relative {name!r}: {k} = {val!r}; values must be finite numbers, "
                                         "booleans or strings (a list of them is a grid)")
                    if isinstance(val, (int, float)) and not isinstance(val, bool) and abs(val) > BIG:
                        raise ValueError(f"relative {name!r}: {k} = {val!r} is out of range (|value| <= {BIG:g})")
            if math.prod(len(vals) for vals in grids[name].values()) > MAX_GRID:
                raise ValueError(f"relative {name!r}: the grid has more than {MAX_GRID} combinations")
            for values in itertools.product(*grids[name].values()):
                point = dict(zip(grids[name], values))
                if name == "igr":  # IGR's step size is the optimizer's learning rate
                    point.setdefault("lr", 0.1)
                try:
                    make_rule(name, **point)  # its ValueError names the valid parameters
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"relative {name!r} with {point}: {exc}") from None
        return grids

    @field_validator("fractions", "seeds", "ablations")
    @classmethod
    def _unique(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique, got {v}")
        return v


def _format_error(err: ValidationError, source: str, schema: type[BaseModel]) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = _model_at(schema, e["loc"][:-1])
            known = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            msg = "unknown key" + (f"; did you mean '{close[0]}'?" if close else "")
            msg += f" (allowed: {', '.join(known)})" if known else ""
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for key in loc:
        field = model.model_fields.get(str(key))
        ann = getattr(field, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def packaged_configs() -> list[str]:
    """Names of the configs shipped inside the package."""
    return sorted(p.name[:-5] for p in resources.files("antireg.configs").iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(ref: str) -> Path:
    """A path to a YAML file, or the name of a packaged config (``concrete_reg``)."""
    path = Path(ref)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    packaged = resources.files("antireg.configs") / f"{name}.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    close = difflib.get_close_matches(name, packaged_configs(), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"config '{ref}' not found: not a file, and not a packaged config.{hint} "
        f"Packaged configs: {', '.join(packaged_configs())}."
    )


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """``raw`` with each ``KEY=VALUE`` of ``overrides`` set (``--set`` on the command line).

    KEY is a dotted path into the mapping (``ar.lambda0_unit``); VALUE is read as YAML
    (safe), so ``seeds=[0,1]`` gives a list and ``lr=1e-3`` a number. The result is
    validated like the file, so a misspelt key or a bad value is a ConfigError.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seeds=[0,1]")
        try:
            value = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
        *parents, leaf = key.strip().split(".")
        node = raw
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parents[: i + 1])} is not a mapping")
        node[leaf] = value
    return raw


def load_config(ref: str, schema: type[BaseModel] = ExperimentCfg, overrides: Sequence[str] = ()) -> Any:
    """Read and validate a config given by path or packaged name against ``schema``
    (an experiment by default; the learned-optimizer commands pass theirs), after
    the ``KEY=VALUE`` ``overrides`` (:func:`apply_overrides`)."""
    path = resolve_config_path(ref)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a config is a few lines")
        raw = yaml.load(data.decode("utf-8"), Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config {path} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping of keys to values, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        hint = ""
        if schema is ExperimentCfg and path.stem.startswith("lopt_"):
            hint = f"\n  (a learned optimizer's meta-training config: use `antireg lopt train --config {path.stem}`)"
        if overrides:
            hint += f"\n  (with --set {' '.join(overrides)})"
        raise ConfigError(_format_error(exc, str(path), schema) + hint) from None
