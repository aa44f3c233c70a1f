"""One composed training step.

    closure(s) ─► rule ─► grads ─► + penalty λ(θ − θ_c) ─► clip ─► optimizer.step() ─► project

Each stage is optional and independent: the rule knows nothing of the penalty,
the optimizer nothing of the safeguards. Users call ``step(closure)`` the way they
would call ``optimizer.step()``; the rule owns every extra forward/backward pass.

- Any ``torch.optim`` optimizer; an ``lr_scheduler`` attached to it works as usual
  (the caller steps the scheduler).
- ``step([c1, c2, ...])``: gradient accumulation over micro-batches, the same
  update as the full batch (for SAM-type rules the perturbation uses the
  full-batch gradient).
- ``autocast=torch.bfloat16``: mixed-precision forward passes.
- ``scaler=GradScaler(...)``: loss scaling, one scale, one inf check and one
  ``update()`` per step however many passes the rule makes.
- ``state_dict()`` / ``load_state_dict()``: the whole step, for exact resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from antireg.penalty import ProximityPenalty
from antireg.rules import ERM
from antireg.rules.base import Batch, Closure, norm_layers
from antireg.safeguards import GradClip, TrustRegion

# The stages of AR under their names in TrainStep and antireg.optim.AntiReg; each saves
# what of it changes while training (configuration such as λ or G is rebuilt from the
# config; θ_c, θ_ref and R come from θ₀ and so cannot be rebuilt from a fresh model).
_STAGES = ("penalty", "clip", "trust_region")


def safeguard_state(owner: Any) -> dict[str, Any]:
    """Each of ``owner.penalty``, ``.clip`` and ``.trust_region`` that is set, by its own
    ``state_dict()``, under its name."""
    return {name: part.state_dict() for name in _STAGES if (part := getattr(owner, name, None)) is not None}


def load_safeguard_state(owner: Any, state: dict[str, Any]) -> None:
    """Restore :func:`safeguard_state` into ``owner``'s (fresh) stages, each by its own
    ``load_state_dict()``."""
    for name in _STAGES:
        if (part := getattr(owner, name, None)) is not None:
            part.load_state_dict(state[name])


@dataclass(frozen=True)
class StepInfo:
    """What one step did: the plain loss at θ (before the update), the gradient
    norm the clip saw (NaN when clipping is off), which safeguards fired, and
    whether the optimizer step was skipped (loss scaling found an inf/NaN)."""

    loss: float
    grad_norm: float
    clipped: bool
    projected: bool
    skipped: bool = False


class TrainStep:
    """rule → penalty → clip → optimizer.step() → trust-region projection.

    ``rule``: a gradient rule (``antireg.rules``; ERM when None). ``penalty``,
    ``clip``, ``trust_region``: AR's signed proximity penalty and its safeguards,
    each optional. ``autocast``: dtype of the forward passes (e.g.
    ``torch.bfloat16``). ``scaler``: a ``torch.amp.GradScaler``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        rule: Callable | None = None,
        penalty: ProximityPenalty | None = None,
        clip: GradClip | None = None,
        trust_region: TrustRegion | None = None,
        *,
        autocast: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.rule = rule if rule is not None else ERM()
        self.penalty = penalty
        self.clip = clip
        self.trust_region = trust_region
        self.autocast = autocast
        self.scaler = scaler
        self._norm_layers = norm_layers([model])  # found once, not on every extra pass
        if hasattr(self.rule, "bind"):
            self.rule.bind(optimizer)

    def __call__(self, closure: Closure | Sequence[Closure]) -> StepInfo:
        """One step on the batch ``closure()`` returns per-example losses for, or on
        the micro-batches of a list of closures."""
        self.optimizer.zero_grad(set_to_none=True)
        scale = self._loss_scale()
        batch = Batch(self.model, closure, autocast=self.autocast, loss_scale=scale, norm_layers=self._norm_layers)
        loss = self.rule(self.model, batch)
        if self.penalty is not None:
            self.penalty()
        if self.scaler is not None:
            # The rule returns true gradients (its perturbations need true sizes);
            # GradScaler's inf check, skip and update expect S·g. Multiplying by S
            # and letting unscale_ divide is exact: S is a power of two.
            torch._foreach_mul_(self._grads(), scale)
            self.scaler.unscale_(self.optimizer)
        clipped = self.clip() if self.clip is not None else False
        skipped = self._optimizer_step(scale)
        projected = self.trust_region() if self.trust_region is not None else False
        grad_norm = self.clip.last_norm if self.clip is not None else math.nan
        return StepInfo(float(loss), grad_norm, clipped, projected, skipped)

    def _loss_scale(self) -> float:
        """S for this step: 1 without a scaler. ``scale(1)`` is S and initialises
        the scaler on first use."""
        if self.scaler is None:
            return 1.0
        return float(self.scaler.scale(torch.ones((), device=next(self.model.parameters()).device)))

    def _optimizer_step(self, scale: float) -> bool:
        """optimizer.step(), through the scaler if any (one update per step);
        True when the scaler skipped the step."""
        if self.scaler is None:
            self.optimizer.step()
            return False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return self.scaler.get_scale() < scale  # the scale backs off only on inf/NaN

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scaler, rule state, penalty centre and safeguard state.

        Like torch's own state dicts it references live tensors: ``torch.save`` it,
        or ``copy.deepcopy`` it to keep it in memory while training goes on. The
        caller saves its lr scheduler and RNG states alongside.
        """
        state: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if hasattr(self.rule, "state_dict"):
            state["rule"] = self.rule.state_dict()
        state.update(safeguard_state(self))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved into this step's (fresh) components."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        if hasattr(self.rule, "load_state_dict"):
            self.rule.load_state_dict(state["rule"])
        load_safeguard_state(self, state)
