"""Empirical NTK: linear identities, an autograd oracle, lazy-regime AR ⇔ negative kernel ridge."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from antireg import spectral
from antireg.linear import ARRidge
from antireg.ntk import dof_per_n, empirical_ntk, ntk_spectrum, safe_lambda_min
from antireg.penalty import ProximityPenalty
from antireg.step import TrainStep


def data(n: int = 30, d: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def autograd_ntk(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Oracle: the full (n·k)×(n·k) kernel from one backward pass per sample and output."""
    model = copy.deepcopy(model).double()
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for x in X.double():
        out = model(x.unsqueeze(0)).reshape(-1)
        for a in range(out.numel()):
            grads = torch.autograd.grad(out[a], params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    J = torch.stack(rows)
    return J @ J.T


def mean_over_outputs(full: torch.Tensor, k: int) -> torch.Tensor:
    n = full.shape[0] // k
    return full.reshape(n, k, n, k).diagonal(dim1=1, dim2=3).mean(-1)


# --- linear models: the NTK is the Gram matrix of the (augmented) design ---------


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_model_ntk_is_gram_matrix(k, bias):
    X = data()
    G = X.double() @ X.double().T + (1.0 if bias else 0.0)  # the bias adds the all-ones matrix
    model = nn.Linear(5, k, bias=bias)
    for chunk in (None, 7):
        torch.testing.assert_close(empirical_ntk(model, X, chunk_size=chunk), G, rtol=1e-12, atol=1e-12)
        full = empirical_ntk(model, X, outputs="full", chunk_size=chunk)
        expected = torch.kron(G, torch.eye(k, dtype=torch.float64))
        torch.testing.assert_close(full, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_model_bound_and_dof_equal_the_linear_smoother(bias):
    # n = 30 > d = 5: K is rank-deficient, so the spectrum must drop its null space.
    X = data()
    n = X.shape[0]
    A = X.double().numpy()
    if bias:
        A = np.c_[A, np.ones(n)]  # a penalised bias is a column of ones
    y = np.random.default_rng(0).normal(size=n)
    eigs = ntk_spectrum(nn.Linear(5, 1, bias=bias), X)
    np.testing.assert_allclose(eigs, spectral.gram_spectrum(A, fit_intercept=False), rtol=1e-10)

    ridge = ARRidge(alpha=0.0, fit_intercept=False).fit(A, y)
    assert safe_lambda_min(eigs, n) == pytest.approx(ridge.alpha_min_ / n, rel=1e-10)
    lam = 0.5 * safe_lambda_min(eigs, n)
    # Oracle: the trace of the smoother S = A (AᵀA + nλI)⁻¹ Aᵀ, formed explicitly.
    S = A @ np.linalg.solve(A.T @ A + n * lam * np.eye(A.shape[1]), A.T)
    assert dof_per_n(eigs, lam, n) == pytest.approx(np.trace(S) / n, rel=1e-10)
    ar_ridge = ARRidge(alpha=n * lam, fit_intercept=False).fit(A, y)
    assert dof_per_n(eigs, lam, n) * n == pytest.approx(ar_ridge.dof_)
    assert dof_per_n(eigs, lam, n) > A.shape[1] / n  # AR raises df above the rank


# --- MLPs: against per-sample autograd, both computation paths --------------------


class Scaled(nn.Module):
    """A parameter outside any nn.Linear, to exercise the plain-Jacobian path."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def small_mlp(k: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 16), nn.Tanh(), Scaled(16), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, k)
    )
    model[3].bias.requires_grad_(False)  # a partly frozen Linear falls back to the Jacobian path
    return model


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("factorize", [True, False])
def test_mlp_ntk_matches_autograd_oracle(k, factorize):
    model, X = small_mlp(k), data(n=11)
    full = autograd_ntk(model, X)
    for chunk in (None, 4):
        got = empirical_ntk(model, X, outputs="full", chunk_size=chunk, factorize_linear=factorize)
        torch.testing.assert_close(got, full, rtol=1e-10, atol=1e-12)
        got = empirical_ntk(model, X, chunk_size=chunk, factorize_linear=factorize)
        torch.testing.assert_close(got, mean_over_outputs(full, k), rtol=1e-10, atol=1e-12)


def test_reused_linear_needs_the_jacobian_path():
    shared = nn.Linear(4, 4)
    weight = shared.weight
    model = nn.Sequential(shared, nn.Tanh(), shared)
    X = data(n=6, d=4)
    with pytest.raises(ValueError, match="factorize_linear=False"):
        empirical_ntk(model, X)
    full = autograd_ntk(model, X)
    got = empirical_ntk(model, X, factorize_linear=False)
    torch.testing.assert_close(got, mean_over_outputs(full, 4))
    assert shared.weight is weight and weight.requires_grad  # the caller's model is untouched


def test_bad_arguments():
    model, X = nn.Linear(5, 1), data()
    with pytest.raises(ValueError, match="outputs"):
        empirical_ntk(model, X, outputs="trace")
    with pytest.raises(ValueError, match="chunk_size"):
        empirical_ntk(model, X, chunk_size=0)
    with pytest.raises(ValueError, match="samples"):
        empirical_ntk(model, torch.zeros(0, 5))


# --- lazy regime: AR with θ_c = θ₀ is negative kernel ridge with the NTK -----------


class WideNet(nn.Module):
    """f(x) = vᵀ relu(W x/√d + b)/√m + c with N(0, 1) parameters: NTK parameterisation
    (Jacot et al. 2018), whose kernel stays O(1) and whose training is lazy as m grows."""

    def __init__(self, d: int, m: int) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(d, m), nn.Linear(m, 1)
        for p in self.parameters():
            nn.init.normal_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(x / math.sqrt(self.hidden.in_features)))
        return self.out(h / math.sqrt(self.out.in_features)).squeeze(-1)


@pytest.fixture
def one_thread():
    # Thousands of tiny steps: with 2 threads, synchronisation costs more than the arithmetic.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lazy_mlp_with_ar_tracks_negative_kernel_ridge(one_thread):
    n, n_test, d, m, eta = 20, 50, 16, 2048, 0.5
    torch.manual_seed(0)
    X = torch.randn(n + n_test, d, dtype=torch.float64)
    X *= math.sqrt(d) / X.norm(dim=1, keepdim=True)  # inputs on the sphere: a well-conditioned NTK
    net = WideNet(d, m).double()
    with torch.no_grad():
        f0 = net(X)
    # Targets f₀ + s·g with a small scale s: lazy training by output scale (Chizat, Oyallon,
    # Bach 2019). With λ < 0 the null space of J is repelling at rate |λ|, so the O(s)
    # nonlinear leak into it grows during training; a small s keeps it negligible.
    g = torch.sin(2 * X.sum(1) / math.sqrt(d)) + 0.3 * torch.randn(n + n_test, dtype=torch.float64)
    y = f0[:n] + 1e-4 * g[:n]

    K = empirical_ntk(net, X)
    K_train, K_cross = K[:n, :n], K[n:, :n]
    eigs = ntk_spectrum(net, X[:n])
    lam = safe_lambda_min(eigs, n, eta=eta)  # = −½·μ_min/n: well inside the safe region
    assert lam < 0

    def kernel_ridge(lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The change f − f₀ = K(K + nλI)⁻¹(y − f₀) on the training points, and on the test
        points with the cross-kernel in front."""
        coef = torch.linalg.solve(K_train + n * lam * torch.eye(n, dtype=torch.float64), y - f0[:n])
        return K_train @ coef, K_cross @ coef

    # Full-batch GD on ½·mean squared error + λ·½‖θ − θ₀‖²; steps until the slowest mode,
    # contracting by lr·(μ_min/n + λ) per step, is within 1e-3.
    lr = n / eigs[0]
    steps = math.ceil(math.log(1e3) / (lr * (eigs[-1] / n + lam)))
    penalty = ProximityPenalty(list(net.parameters()), lam, center="init")
    step = TrainStep(net, torch.optim.SGD(net.parameters(), lr=lr), penalty=penalty)
    for _ in range(steps):
        step(lambda: 0.5 * (net(X[:n]) - y) ** 2)
    with torch.no_grad():
        moved = net(X) - f0
    moved_train, moved_test = moved[:n], moved[n:]

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    tol = 0.01
    target_train, target_test = kernel_ridge(lam)
    assert rel(moved_train, target_train) < tol
    assert rel(moved_test, target_test) < tol
    # The tolerance has power: λ of the wrong sign, λ not scaled by n (K + λI) and plain
    # ERM all miss by far more.
    for wrong in (-lam, lam / n, 0.0):
        wrong_train, wrong_test = kernel_ridge(wrong)
        assert rel(moved_train, wrong_train) > 10 * tol
        assert rel(moved_test, wrong_test) > 10 * tol
