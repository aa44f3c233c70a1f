"""The optimizers a sweep can train with: their configs and :func:`make_optimizer`.

A sweep's ``optimizers:`` maps a name to a config. The name's first word is the
optimizer's kind, and a label may follow it, so that one sweep compares several
of a kind (``learned_sam`` and ``learned_plain``, ``sgd`` and ``sgd_slow``):

- ``sgd``: SGD with heavy-ball momentum, θ ← θ − η·v, v ← μ·v + g + wd·θ;
- ``adam``: Adam (Kingma & Ba 2015) with L2 weight decay added to g;
- ``learned``: a meta-trained coordinate-wise optimizer (:mod:`.learned`; Sahoo & Krishnan
  2025, arXiv:2510.08968), read from the checkpoint ``antireg lopt train`` saved.

Kept free of torch at import, so the CLI starts fast; torch loads on the first optimizer.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    import torch

OPTIMIZER_NAMES = ("sgd", "adam", "learned")  # the kinds; a sweep's names are these, each with an optional _label
NAME_PATTERN = re.compile(r"^(sgd|adam|learned)(_[a-z0-9]+)?$")
BIG = 1e6  # bound of rates, λ₀, weight decay and the like in every config: far beyond sense, far from overflow


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class OptimizerCfg(_Strict):
    """SGD (``momentum`` μ, ``weight_decay``) or Adam (``weight_decay``; ``momentum`` unused).

    Its fields are part of every run id: adding one, or changing a default, changes them.
    """

    lr: Annotated[float, Field(gt=0.0, le=BIG)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    weight_decay: Annotated[float, Field(ge=0.0, le=BIG)] = 0.0


class LearnedCfg(_Strict):
    """A learned optimizer: ``checkpoint`` is a ``.pt`` file, or the name of one that
    ``antireg lopt train`` saved under ``<output-dir>/lopt/``. :func:`resolve_checkpoints`
    turns a name into its path and records the file's ``sha256``, so that a run's id
    changes when the checkpoint does (a retrained optimizer never reuses old results)."""

    checkpoint: Annotated[str, Field(min_length=1, max_length=4096)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


AnyOptimizerCfg = OptimizerCfg | LearnedCfg
SCHEMAS: dict[str, type[AnyOptimizerCfg]] = {"sgd": OptimizerCfg, "adam": OptimizerCfg, "learned": LearnedCfg}


def kind_of(name: str) -> str:
    """The kind of an optimizer name: ``learned_sam`` → ``learned``; a ValueError names the valid forms."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"unknown optimizer {name!r}; names are {', '.join(OPTIMIZER_NAMES)}, each optionally "
                         "followed by _label (lowercase letters and digits), e.g. learned_sam")
    return name.split("_", 1)[0]


def _validate(raw: Any) -> dict[str, AnyOptimizerCfg]:
    """Each entry of ``optimizers:`` against the schema of its name's kind."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping of optimizer names to settings, got {type(raw).__name__}")
    out = {}
    for name, cfg in raw.items():
        schema = SCHEMAS[kind_of(name)]
        try:
            out[name] = cfg if isinstance(cfg, schema) else schema.model_validate(cfg)
        except ValidationError as exc:
            # the full key of each problem (optimizers.adam.lr), as pydantic names the other fields
            problems = "; ".join(f"{'.'.join(map(str, ('optimizers', name, *e['loc'])))}: {e['msg']}"
                                 for e in exc.errors())
            raise ValueError(problems) from None
    return out


# The type of a sweep config's ``optimizers:`` (and of what --set optimizers=… gives).
Optimizers = Annotated[dict[str, AnyOptimizerCfg], BeforeValidator(_validate), Field(min_length=1)]


def checkpoint_path(ref: str, output_dir: str | Path) -> Path:
    """``ref`` if it is a file, else ``<output_dir>/lopt/<ref>.pt`` (where ``lopt train`` saves)."""
    path = Path(ref)
    return path if path.is_file() else Path(output_dir) / "lopt" / f"{path.name.removesuffix('.pt')}.pt"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_checkpoints(optimizers: dict[str, AnyOptimizerCfg], output_dir: str | Path) -> dict[str, AnyOptimizerCfg]:
    """``optimizers`` with each learned optimizer's checkpoint resolved (:func:`checkpoint_path`),
    loaded once (so a missing or corrupt file is a ConfigError before any run trains) and its
    content digest recorded; other optimizers as they are."""
    from antireg.optimizers.learned import load_lopt

    out = dict(optimizers)
    for name, cfg in optimizers.items():
        if isinstance(cfg, LearnedCfg):
            path = checkpoint_path(cfg.checkpoint, output_dir)
            load_lopt(path)
            out[name] = cfg.model_copy(update={"checkpoint": str(path), "sha256": _sha256(path)})
    return out


def make_optimizer(name: str, cfg: AnyOptimizerCfg, params: Iterable["torch.Tensor"]) -> "torch.optim.Optimizer":
    """The ``torch.optim.Optimizer`` of optimizer ``name`` with settings ``cfg`` over ``params``.

    A learned optimizer's checkpoint is read here; a missing or corrupt one, or one whose
    content no longer matches the ``sha256`` recorded when the sweep began, is a ConfigError.
    """
    import torch

    kind = kind_of(name)
    if not isinstance(cfg, SCHEMAS[kind]):
        raise TypeError(f"optimizer {name!r} takes a {SCHEMAS[kind].__name__}, not a {type(cfg).__name__}")
    if kind == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    from antireg.optimizers.learned import CheckpointError, LearnedOptimizer, load_lopt

    path = Path(cfg.checkpoint)
    net = load_lopt(path)  # a CheckpointError (a ConfigError) for a missing or corrupt file
    if cfg.sha256 is not None and _sha256(path) != cfg.sha256:
        raise CheckpointError(f"learned-optimizer checkpoint {path} changed since the sweep began (sha256 differs); "
                              "re-run the sweep to train with the new one")
    return LearnedOptimizer(params, net)
