"""The sharpness-aware family: SAM, ASAM, GSAM.

Each evaluates g = ∇L(θ), steps to θ + ε̂ inside the ρ-ball, takes the gradient
gᵖ = ∇L(θ + ε̂) there, and returns θ unchanged with the update direction in ``p.grad``.

- Foret, Kleiner, Mobahi, Neyshabur (2021). Sharpness-Aware Minimization for
  Efficiently Improving Generalization. ICLR.
- Kwon, Kim, Park, Choi (2021). ASAM: Adaptive Sharpness-Aware Minimization for
  Scale-Invariant Learning of Deep Neural Networks. ICML.
- Zhuang, Gong, Yuan, Cui, Adam, Dvornek, Tatikonda, Duncan, Liu (2022). Surrogate
  Gap Minimization Improves Sharpness-Aware Training. ICLR.
"""

from __future__ import annotations

import torch

from antireg.rules.base import NORM_EPS, Batch, Grads, Rule, dot, norm_scale, perturbed


class SAM(Rule):
    """SAM: ε̂ = ρ g/‖g‖ (Foret et al., Eq. 2), update along gᵖ = ∇L(θ + ε̂) (Eq. 3,
    the second-order term dropped as in the paper)."""

    def __init__(self, rho: float = 0.05) -> None:
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        self.rho = float(rho)

    def current_rho(self) -> float:
        """ρ for this step (constant here; GSAM may schedule it)."""
        return self.rho

    def perturbation(self, batch: Batch, g: Grads) -> tuple[Grads, float]:
        """The ascent step ε̂ = c·d inside the ρ-ball, as (d, c): d = g, c = ρ/‖g‖."""
        return g, norm_scale(self.current_rho(), g)

    combine_reads_g = False  # SAM and ASAM step along gᵖ alone

    def ascent(self, batch: Batch) -> tuple[torch.Tensor, Grads | None, Grads]:
        """(L(θ), g = ∇L(θ) or None when :meth:`combine` does not read it, gᵖ = ∇L(θ + ε̂)),
        θ left as it was."""
        loss, g = batch.grad()
        with perturbed(batch.params, *self.perturbation(batch, g)):
            if not self.combine_reads_g:
                g = None
            _, g_p = batch.grad()
        return loss, g, g_p

    def combine(self, g: Grads | None, g_p: Grads) -> Grads:
        """The update direction from g = ∇L(θ) and gᵖ = ∇L(θ + ε̂): gᵖ for SAM and ASAM.
        A rule's ``combine`` may write into its arguments (each caller hands over gradients it
        no longer needs), so that no step allocates its direction anew."""
        return g_p

    def gradient(self, batch: Batch) -> tuple[torch.Tensor, Grads]:
        loss, g, g_p = self.ascent(batch)
        return loss, self.combine(g, g_p)


class ASAM(SAM):
    """ASAM: adaptive (scale-invariant) neighbourhood ‖T⁻¹ε‖ ≤ ρ, so
    ε̂ = ρ T² g / ‖T g‖ (Kwon et al., Algorithm 1), with the elementwise
    T = |w| + η on weights and T = 1 on biases and other non-weight parameters, as in the
    authors' code (SamsungLabs/ASAM, which treats parameters named ``*weight*``)."""

    def __init__(self, rho: float = 0.5, eta: float = 0.01) -> None:
        super().__init__(rho)
        if not eta >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = float(eta)

    def perturbation(self, batch: Batch, g: Grads) -> tuple[Grads, float]:
        """ε̂ = c·d with d = T²g, c = ρ/‖T g‖."""
        # T only on the weights (T = 1 elsewhere: nothing to multiply), as foreach ops on them
        tg, t2g = list(g), list(g)
        if w := [i for i, name in enumerate(batch.names) if "weight" in name]:
            t = torch._foreach_abs([batch.params[i].detach() for i in w])
            torch._foreach_add_(t, self.eta)
            tg_w = torch._foreach_mul(t, [g[i] for i in w])
            torch._foreach_mul_(t, tg_w)  # T·(T g) in place: T itself is not needed again
            for i, tgi, t2gi in zip(w, tg_w, t):
                tg[i], t2g[i] = tgi, t2gi
        return t2g, norm_scale(self.current_rho(), tg)


class GSAM(SAM):
    """GSAM: split g into parts parallel and orthogonal to gᵖ,
    g∥ = (⟨g, gᵖ⟩/‖gᵖ‖²) gᵖ, g⊥ = g − g∥, and update along gᵖ − α g⊥
    (Zhuang et al., Algorithm 1). α = 0 is SAM.

    ρ schedule (the paper's ImageNet setting): with ``rho_min`` set, ρ follows the
    learning rate lr_t of the bound optimizer's first parameter group,
    ρ_t = ρ_min + (ρ − ρ_min)·(lr_t − lr_min)/(lr_max − lr_min);
    ``lr_max`` defaults to the optimizer's constructor learning rate. Without
    ``rho_min``, ρ is constant.
    """

    def __init__(
        self,
        rho: float = 0.05,
        alpha: float = 0.1,
        rho_min: float | None = None,
        lr_max: float | None = None,
        lr_min: float = 0.0,
    ) -> None:
        super().__init__(rho)
        if rho_min is not None and not 0 <= rho_min <= rho:
            raise ValueError(f"rho_min must lie in [0, rho={rho}], got {rho_min}")
        self.alpha = float(alpha)
        self.rho_min = rho_min
        self.lr_max = lr_max
        self.lr_min = float(lr_min)
        self._optimizer: torch.optim.Optimizer | None = None

    combine_reads_g = True  # g⊥ is g's

    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        """Read the learning rate from ``optimizer`` (TrainStep calls this)."""
        self._optimizer = optimizer

    def current_rho(self) -> float:
        if self.rho_min is None:
            return self.rho
        if self._optimizer is None:
            raise RuntimeError("GSAM's rho schedule reads the learning rate: use a TrainStep or call bind(optimizer)")
        lr = self._optimizer.param_groups[0]["lr"]
        lr_max = self.lr_max if self.lr_max is not None else self._optimizer.defaults["lr"]
        if lr_max <= self.lr_min:
            raise ValueError(f"GSAM needs lr_max > lr_min, got lr_max={lr_max}, lr_min={self.lr_min}")
        return self.rho_min + (self.rho - self.rho_min) * (lr - self.lr_min) / (lr_max - self.lr_min)

    def combine(self, g: Grads, g_p: Grads) -> Grads:
        # gᵖ − α g⊥ = gᵖ − α(g − coef·gᵖ) = (1 + α·coef)·gᵖ − α·g, without g⊥ as a tensor
        coef = float(dot(g, g_p)) / (float(dot(g_p, g_p)) + NORM_EPS)
        torch._foreach_mul_(g_p, 1.0 + self.alpha * coef)
        torch._foreach_add_(g_p, g, alpha=-self.alpha)
        return g_p
