"""Config schema of a "paper experiment" (linear, cheap, many cells).

A YAML file::

    paper: v4_exp1          # the kind: a key of antireg.paper.EXPERIMENTS
    experiment: v4_exp1     # the name of the outputs (default: the kind)
    seed: 0
    replications: 80        # where the experiment uses it
    options: {...}          # validated by the experiment's own strict pydantic ``Options``

Loaded with :func:`antireg.experiments.config.load_config` (safe YAML); every problem is a
:class:`~antireg.experiments.config.ConfigError` naming the key path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from antireg.experiments.config import ConfigError, load_config, resolve_config_path


class PaperCfg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paper: str
    experiment: str = ""
    seed: int = 0
    replications: int = Field(1, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_name(self) -> "PaperCfg":
        if not self.experiment:
            self.experiment = self.paper
        return self


def _format(err: ValidationError, prefix: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = "unknown key (remove it or fix its spelling)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def validate(raw: PaperCfg) -> PaperCfg:
    """Check the kind and validate ``options`` against that experiment's ``Options``;
    returns the config with ``options`` replaced by the validated model's dump (defaults filled)."""
    from antireg.paper import EXPERIMENTS

    if raw.paper not in EXPERIMENTS:
        raise ConfigError(f"paper: unknown kind {raw.paper!r}; choose one of {', '.join(EXPERIMENTS)}")
    exp = EXPERIMENTS[raw.paper]
    try:
        opts = exp.Options.model_validate(raw.options)
    except ValidationError as exc:
        raise ConfigError(f"config of {raw.experiment!r} has invalid options:\n{_format(exc, 'options')}") from None
    return raw.model_copy(update={"options": opts.model_dump(mode="json")})


def load_paper_config(ref: str, overrides: Sequence[str] = ()) -> PaperCfg:
    """Load a paper config by path or packaged name (``v4_exp1``), with ``KEY=VALUE``
    overrides (``--set``), and validate it fully."""
    return validate(load_config(ref, schema=PaperCfg, overrides=overrides))


def is_paper_config(ref: str) -> bool:
    """True when ``ref`` (path or packaged name) is a YAML mapping with a top-level ``paper`` key."""
    try:
        path = resolve_config_path(ref)
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (ConfigError, OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "paper" in raw
