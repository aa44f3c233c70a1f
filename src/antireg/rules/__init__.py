"""Gradient rules: turn a loss closure into gradients.

A rule is called as ``rule(model, closure)``. ``closure()`` runs a forward pass on
the current batch and returns the per-example losses (a 1-D tensor); a list of
closures is one batch split into micro-batches, and a :class:`Batch` (what
:class:`~antireg.step.TrainStep` passes) also carries autocast and loss scaling.
The rule leaves in every ``p.grad`` the gradient of its objective at the current θ
(restoring θ if it perturbed it) and returns the plain mean loss at θ, detached.
The caller zeroes gradients before calling. Extra forward passes never move
BatchNorm running statistics. ERM is the trivial rule.

A two-pass rule (SAM, ASAM, GSAM, GR's finite differences, GAM) is also its two halves:
``perturbation(batch, first) -> (d, c)``, the step ε̂ = c·d to its second point, and
``combine(first, second)``, the direction from the two passes (it may write into them);
``combine_reads_g`` says whether ``combine`` reads the first pass, which is otherwise
dropped before the second. ``gradient`` runs the two in turn; the optimizers' ``first_step``
/ ``second_step`` and the stacked trainer call them apart.

A rule that needs the optimizer (GSAM's ρ schedule reads the learning rate) has a
``bind(optimizer)`` method, which TrainStep calls. Build rules by name with
:func:`make_rule`.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable

from antireg.rules.base import Batch, Rule, frozen_norm_stats, perturbed
from antireg.rules.erm import ERM
from antireg.rules.flooding import Flooding
from antireg.rules.gam import GAM
from antireg.rules.gr import IGR, GradientNorm
from antireg.rules.sam import ASAM, GSAM, SAM

RULES: dict[str, Callable[..., Rule]] = {
    "erm": ERM,
    "gr": GradientNorm,
    "gr_db": partial(GradientNorm, mode="db"),
    "gr_fd_forward": partial(GradientNorm, mode="fd_forward"),
    "gr_fd_backward": partial(GradientNorm, mode="fd_backward"),
    "igr": IGR,
    "flooding": Flooding,
    "sam": SAM,
    "asam": ASAM,
    "gsam": GSAM,
    "gam": GAM,
}


def _parameters(factory: Callable[..., Rule]) -> dict[str, inspect.Parameter]:
    """The keyword parameters a name accepts (those a partial fixes are not)."""
    fixed = factory.keywords if isinstance(factory, partial) else {}
    target = factory.func if isinstance(factory, partial) else factory
    return {k: v for k, v in inspect.signature(target).parameters.items() if k not in fixed}


def make_rule(name: str, **params: Any) -> Rule:
    """Build a rule by name, e.g. ``make_rule("sam", rho=0.05)``, as the config runner does.

    Raises ValueError naming the valid names, or the valid parameters of ``name``,
    on an unknown name, an unknown parameter or a missing required one.
    """
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid names: {', '.join(RULES)}")
    accepted = _parameters(RULES[name])
    usage = ", ".join(k if p.default is inspect.Parameter.empty else f"{k}={p.default!r}" for k, p in accepted.items())
    unknown = sorted(set(params) - set(accepted))
    missing = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in params]
    if unknown or missing:
        problem = f"unknown parameter(s) {unknown}" if unknown else f"missing parameter(s) {missing}"
        raise ValueError(f"rule {name!r}: {problem}; valid parameters: {usage or '(none)'}")
    return RULES[name](**params)


__all__ = [
    "ASAM",
    "Batch",
    "ERM",
    "Flooding",
    "GAM",
    "GSAM",
    "GradientNorm",
    "IGR",
    "RULES",
    "Rule",
    "SAM",
    "frozen_norm_stats",
    "make_rule",
    "perturbed",
]
