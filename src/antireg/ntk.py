"""Empirical neural tangent kernel (NTK) of a network at its current parameters.

Jacot, Gabriel, Hongler (2018), *Neural Tangent Kernel: Convergence and
Generalization in Neural Networks*, NeurIPS. With J(x) = ∂f(x; θ)/∂θ at θ₀, the
empirical NTK is Θ(x, x') = J(x) J(x')ᵀ. Linearised at θ₀,
f(x; θ) ≈ f(x; θ₀) + J(x)(θ − θ₀), so training with the loss

    ½·(1/n) Σᵢ ‖f(xᵢ; θ) − yᵢ‖² + λ·½‖θ − θ₀‖²

is kernel ridge regression with Θ, in closed form on the training points
f = f₀ + K(K + nλI)⁻¹(y − f₀). Its Hessian JᵀJ/n + λI has, on the row space of
J, the eigenvalues μᵢ/n + λ, where μᵢ are the nonzero eigenvalues of K = J Jᵀ; so
in the alpha units of :mod:`antireg.spectral`, alpha = n·λ, the safe region is
λ > −(1−η)·μ_min/n and df(λ) = Σ μᵢ/(μᵢ + nλ), exactly as for a linear smoother
(SPEC §1). Anti-Regularization with θ_c = θ₀ is negative kernel ridge with Θ:
Kim, Jeong, Oh (2025), arXiv:2508.17412.

On the null space of J (P ≫ n) the Hessian is λ < 0: gradient descent from θ₀
on the linearised model never enters it, but a finite-width network leaks into
it as its Jacobian drifts, and AR then amplifies the leak at rate |λ| per unit of
learning rate. The trust region is what bounds it; the lazy-regime test keeps it
negligible with a small output scale.

Several outputs (k logits): the full kernel is the (n·k)×(n·k) matrix of all
⟨∂f_a(xᵢ), ∂f_b(xⱼ)⟩, row i·k + a; its spectrum is the exact Hessian spectrum
above. The default scalar kernel is the *mean* over outputs
Θ = (1/k) Σ_a J_a J_aᵀ (n×n), i.e. the trace-over-outputs kernel divided by k:
for a wide network the full kernel tends to Θ ⊗ I_k (Jacot et al. 2018), so Θ's
eigenvalues are the per-output Hessian eigenvalues and the bound and df come out
per output. The undivided trace would inflate μ_min k-fold and the bound with it.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from antireg.lam import dof_per_n, safe_lambda_min  # noqa: F401 - re-exported: their home is antireg.lam

Outputs = Literal["mean", "full"]

# Default chunk: as many samples as keep one chunk's factors, and one kernel block, under 1 GiB.
_CHUNK_BYTES = 2**30


class _Factors(NamedTuple):
    """Per-sample pieces of J for one chunk of c samples.

    For an ``nn.Linear`` z = W a + b applied once per sample, ∂f_a/∂W = δ_a ãᵀ and
    ∂f_a/∂b = δ_a with δ_a = ∂f_a/∂z, so the layer adds ⟨δ_a, δ'_b⟩·⟨ã, ã'⟩ to entry
    (a, b) of the kernel between x and x', with ã = (a, 1): it needs δ (k·out
    numbers) and ã (in + 1),
    not its k·out·in Jacobian (the structured-derivative trick of Novak,
    Sohl-Dickstein, Schoenholz (2022), *Fast Finite Width Neural Tangent Kernel*).
    Every other trainable parameter keeps its full per-sample Jacobian.
    """

    jac: dict[str, torch.Tensor]  # other parameters: (c, k, *shape)
    delta: dict[str, torch.Tensor]  # per factorised Linear: ∂f/∂z, (c, k, out)
    act: dict[str, torch.Tensor]  # per factorised Linear: ã, (c, in [+1 with a bias])


def _factor_fn(model: nn.Module, x0: torch.Tensor, factorize_linear: bool):
    """Return (x-chunk ↦ :class:`_Factors` at the current θ in float64, numbers
    stored per sample, number of outputs k); ``x0`` is one sample."""
    # A private copy: torch's functional_call does not always restore a module whose
    # weights are shared between submodules, and the hooks below must not touch the caller's.
    model = copy.deepcopy(model)
    dtype, device = torch.float64, x0.device
    params = {name: p.detach().to(dtype) for name, p in model.named_parameters()}
    buffers = {name: b.to(dtype) if b.is_floating_point() else b for name, b in model.named_buffers()}
    # Linear layers with every parameter trainable are factorised; the rest get Jacobians.
    linears = {
        name: mod
        for name, mod in model.named_modules()
        if factorize_linear and isinstance(mod, nn.Linear) and all(p.requires_grad for p in mod.parameters())
    }
    factorised = {
        f"{name}.{pname}".lstrip(".") for name, mod in linears.items() for pname, _ in mod.named_parameters()
    }
    theta = {
        name: params[name]
        for name, p in model.named_parameters()
        if p.requires_grad and name not in factorised
    }
    # A zero offset added to each factorised Linear's output: ∂f/∂offset = δ.
    offsets = {
        name: torch.zeros(mod.out_features, dtype=dtype, device=device) for name, mod in linears.items()
    }

    def f(
        theta: dict[str, torch.Tensor], offsets: dict[str, torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acts: dict[str, torch.Tensor] = {}

        def hook_for(name: str):
            def hook(mod: nn.Linear, inp: tuple, out: torch.Tensor) -> torch.Tensor:
                if name in acts or inp[0].shape != (1, mod.in_features):
                    raise ValueError(
                        f"Linear layer {name!r} is reused or sees more than one row per sample; "
                        "compute this NTK with factorize_linear=False"
                    )
                acts[name] = inp[0][0]
                return out + offsets[name]

            return hook

        handles = [mod.register_forward_hook(hook_for(name)) for name, mod in linears.items()]
        try:
            out = functional_call(model, ({**params, **theta}, buffers), (x.unsqueeze(0),))
        finally:
            for handle in handles:
                handle.remove()
        return out.reshape(-1), acts

    jac = vmap(jacrev(f, argnums=(0, 1), has_aux=True), in_dims=(None, None, 0))

    def factors(xc: torch.Tensor) -> _Factors:
        (j_theta, delta), acts = jac(theta, offsets, xc)
        ones = torch.ones(len(xc), 1, dtype=dtype, device=device)
        for name, a in acts.items():
            if linears[name].bias is not None:
                acts[name] = torch.cat([a, ones], 1)
        return _Factors(j_theta, delta, acts)

    k = f(theta, offsets, x0)[0].numel()
    per_sample = k * (sum(t.numel() for t in theta.values()) + sum(o.numel() for o in offsets.values()))
    per_sample += sum(mod.in_features + 1 for mod in linears.values())
    return factors, per_sample, k


def _block(A: _Factors, B: _Factors, outputs: Outputs) -> torch.Tensor:
    """Kernel block between two chunks: Σ over parameter tensors of ⟨J_A, J_B⟩."""

    def contract(ga: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:  # (c, k, m) x (c', k, m)
        if outputs == "mean":
            return torch.einsum("iam,jam->ij", ga, gb) / ga.shape[1]
        return torch.einsum("iam,jbm->iajb", ga, gb)

    block = 0.0
    for name, jac in A.jac.items():
        block = block + contract(jac.flatten(2), B.jac[name].flatten(2))
    for name, delta in A.delta.items():
        gram = A.act[name] @ B.act[name].T
        if outputs == "full":
            gram = gram[:, None, :, None]
        block = block + contract(delta, B.delta[name]) * gram
    return block if outputs == "mean" else block.flatten(0, 1).flatten(1, 2)


def empirical_ntk(
    model: nn.Module,
    X: torch.Tensor,
    *,
    outputs: Outputs = "mean",
    chunk_size: int | None = None,
    factorize_linear: bool = True,
) -> torch.Tensor:
    """Empirical NTK K = J Jᵀ of ``model`` on the rows of ``X`` (Jacot et al. 2018).

    J is the Jacobian of the outputs with respect to every parameter that requires
    a gradient, at the current parameters, computed in float64 per sample with
    ``vmap(jacrev)`` over ``functional_call`` (the model itself is not changed;
    BatchNorm in training mode or dropout would make the per-sample Jacobian
    meaningless, so call ``model.eval()`` first for such models).

    ``outputs="mean"`` returns the n×n kernel (1/k) Σ_a J_a J_aᵀ, ``"full"`` the
    (n·k)×(n·k) kernel (row i·k + a); both float64, on the device of ``X``.

    ``nn.Linear`` layers are factorised (see :class:`_Factors`), which for an MLP
    784→256→256→10 cuts the cost per kernel entry from k·P ≈ 2.7·10⁶ to about
    6·10³ multiply-adds; ``factorize_linear=False`` uses plain per-sample
    Jacobians throughout (for a Linear applied to sequences or reused, or as a
    cross-check). The kernel is assembled from blocks between chunks of
    ``chunk_size`` samples, recomputing the column chunk's factors, so memory is
    O(n² + chunk·size of the factors + chunk²); ``None`` picks the largest chunk
    whose factors and kernel block each fit in 1 GiB.
    """
    if outputs not in ("mean", "full"):
        raise ValueError(f"outputs must be 'mean' or 'full', got {outputs!r}")
    X = torch.as_tensor(X).to(torch.float64)
    if X.ndim < 2 or X.shape[0] < 1:
        raise ValueError(f"X must hold n >= 1 samples along its first axis, got shape {tuple(X.shape)}")
    factors, per_sample, k = _factor_fn(model, X[0], factorize_linear)
    m = k if outputs == "full" else 1  # kernel rows per sample
    if chunk_size is None:
        chunk_size = max(1, min(_CHUNK_BYTES // (8 * per_sample), math.isqrt(_CHUNK_BYTES // 8) // m))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    n = X.shape[0]
    K = torch.empty(n * m, n * m, dtype=torch.float64, device=X.device)
    for s in range(0, n, chunk_size):
        rows = slice(s * m, min(s + chunk_size, n) * m)
        A = factors(X[s : s + chunk_size])
        for t in range(s, n, chunk_size):  # upper blocks only; the lower ones by symmetry
            cols = slice(t * m, min(t + chunk_size, n) * m)
            block = _block(A, A if t == s else factors(X[t : t + chunk_size]), outputs)
            K[rows, cols] = block
            K[cols, rows] = block.T
    return K


def ntk_spectrum(
    model: nn.Module,
    X: torch.Tensor,
    *,
    outputs: Outputs = "mean",
    chunk_size: int | None = None,
    rtol: float | None = None,
) -> np.ndarray:
    """Nonzero eigenvalues μᵢ (decreasing) of :func:`empirical_ntk` of ``model`` on ``X``.

    Eigenvalues μ ≤ rtol·max(μ) are the null space and dropped; the default
    rtol = max(rows of K, number of parameters)·eps is the rounding level of a
    Gram matrix summed over that many terms, the rule of
    :func:`antireg.spectral.thin_svd`. These are the ``eigs`` of
    :mod:`antireg.spectral` for n = number of samples: use them with
    :func:`antireg.lam.resolve` (or :func:`~antireg.lam.safe_lambda_min`,
    :func:`~antireg.lam.dof_per_n`, :func:`~antireg.lam.clamp`, :func:`~antireg.lam.dof_target`).
    """
    K = empirical_ntk(model, X, outputs=outputs, chunk_size=chunk_size)
    if rtol is None:
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rtol = max(K.shape[0], n_params) * np.finfo(np.float64).eps
    mu = np.linalg.eigvalsh(K.cpu().numpy())[::-1]
    return mu[mu > rtol * mu.max(initial=0.0)].copy()
