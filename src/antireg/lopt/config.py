"""The config of ``antireg lopt train``: YAML, a strict pydantic schema. (``antireg lopt eval``
takes sweep configs: :mod:`antireg.experiments.config`.)

Unknown keys and wrong values are reported with their key path, as :class:`antireg.errors.ConfigError`;
files are read by the sweep configs' safe loader (:func:`antireg.experiments.config.load_config`).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from antireg.data import DATASETS
from antireg.experiments.config import load_config
from antireg.lopt.meta import MetaSettings
from antireg.optimizers.learned import Arch
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
        return [spec for group in self.tasks for spec in group.specs()]


def load(ref: str) -> TrainCfg:
    """Read and validate a meta-training config (a path or a packaged config name)."""
    return load_config(ref, TrainCfg)
