"""Configs of ``antireg lopt train`` and ``antireg lopt eval``: YAML, strict pydantic schemas.

Unknown keys and wrong values are reported with their key path, as
:class:`antireg.experiments.config.ConfigError`; files are read with ``yaml.safe_load``.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from antireg.data import DATASETS
from antireg.experiments.config import ConfigError, load_config
from antireg.lopt.meta import MetaSettings
from antireg.lopt.optimizer import Arch
from antireg.lopt.tasks import ModelKind, TaskSpec
from antireg.rules import RULES, make_rule

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Positive = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchCfg(_Strict):
    """The learned optimizer: ``lstm`` or per-parameter ``mlp``, hidden width, step scale η."""

    kind: Literal["lstm", "mlp"] = "lstm"
    hidden: Positive = 20
    step_size: PositiveFloat = 0.01

    def arch(self) -> Arch:
        return Arch(self.kind, self.hidden, self.step_size)


class ObjectiveCfg(_Strict):
    """The meta-objective: a gradient rule (``erm`` is the plain loss) with its parameters, on train or val batches."""

    rule: str = "erm"
    params: dict[str, Any] = {}
    data: Literal["train", "val"] = "train"

    @field_validator("rule")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in RULES:
            raise ValueError(f"unknown rule {v!r}; choose from {', '.join(RULES)}")
        return v

    @field_validator("params")
    @classmethod
    def _valid(cls, v: dict[str, Any], info: Any) -> dict[str, Any]:
        if "rule" in info.data:
            if "rho_min" in v:
                raise ValueError("rho_min follows an optimizer's learning rate; a meta-objective takes a constant rho")
            make_rule(info.data["rule"], **v)  # its ValueError names the valid parameters
        return v


class TaskGroupCfg(_Strict):
    """Every combination of the listed models, widths and training-set sizes on one data set."""

    dataset: str
    models: Annotated[list[ModelKind], Field(min_length=1)]
    widths: Annotated[list[Positive], Field(min_length=1)]
    n_train: Annotated[list[Positive], Field(min_length=1)]
    depth: Positive = 1
    batch_size: Positive | None = 64

    @field_validator("dataset")
    @classmethod
    def _classification(cls, v: str) -> str:
        names = [k for k, info in DATASETS.items() if info.task == "classification"]
        if v not in names:
            raise ValueError(f"tasks need a classification data set; choose from {', '.join(names)}")
        return v

    def specs(self) -> list[TaskSpec]:
        return [TaskSpec(self.dataset, m, w, n, self.depth, self.batch_size)
                for m, w, n in itertools.product(self.models, self.widths, self.n_train)]  # fmt: skip


def _specs(groups: list[TaskGroupCfg]) -> list[TaskSpec]:
    return [spec for g in groups for spec in g.specs()]


class MetaCfg(_Strict):
    iterations: Positive = 200
    unroll: Positive = 20
    truncations: Positive = 5
    meta_lr: PositiveFloat = 3e-3
    grad_clip: PositiveFloat = 1.0
    second_order: bool = False

    def settings(self) -> MetaSettings:
        return MetaSettings(**self.model_dump())


class TrainCfg(_Strict):
    """``antireg lopt train``: meta-train one learned optimizer, saved as ``<output>/lopt/<name>.pt``."""

    name: Name
    seed: Annotated[int, Field(ge=0)] = 0
    threads: Positive = 1
    split_seed: Annotated[int, Field(ge=0)] = 0
    optimizer: ArchCfg = ArchCfg()
    objective: ObjectiveCfg = ObjectiveCfg()
    tasks: Annotated[list[TaskGroupCfg], Field(min_length=1)]
    meta: MetaCfg = MetaCfg()

    def specs(self) -> list[TaskSpec]:
        return _specs(self.tasks)


class BaselineCfg(_Strict):
    """A hand-designed optimizer: SGD with momentum, Adam, or SAM (with SGD momentum).

    ``lr`` (and SAM's ``rho``) may be lists: the value is chosen per task on validation NLL.
    """

    kind: Literal["sgd", "adam", "sam"]
    lr: Annotated[list[PositiveFloat], Field(min_length=1)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    rho: Annotated[list[PositiveFloat], Field(min_length=1)] = [0.05]


class ProbeCfg(_Strict):
    """Sharpness probes at the final θ, on the task's training set (``antireg.lopt.probes``)."""

    rho: PositiveFloat = 0.05
    ascent_steps: Positive = 10


class EvalCfg(_Strict):
    """``antireg lopt eval``: learned optimizers (label → checkpoint) and baselines on held-out tasks."""

    name: Name
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    steps: Positive = 300
    threads: Positive = 1
    split_seed: Annotated[int, Field(ge=0)] = 0
    learned: dict[Name, str] = {}
    baselines: dict[Name, BaselineCfg] = {}
    tasks: Annotated[list[TaskGroupCfg], Field(min_length=1)]
    probes: ProbeCfg = ProbeCfg()
    ece_bins: Positive = 15

    @field_validator("baselines")
    @classmethod
    def _distinct(cls, v: dict[str, BaselineCfg], info: Any) -> dict[str, BaselineCfg]:
        clash = sorted(set(v) & set(info.data.get("learned", {})))
        if clash:
            raise ValueError(f"method names used twice (learned and baselines): {clash}")
        return v

    def specs(self) -> list[TaskSpec]:
        return _specs(self.tasks)


def load(ref: str, schema: type[TrainCfg] | type[EvalCfg]) -> Any:
    """Read and validate a YAML config (a path or a packaged config name) against ``schema``."""
    return load_config(ref, schema)


