"""antireg.diagnostics against independent oracles: numerical differentiation, Monte Carlo, SURE's definition."""

import numpy as np
import pytest

from antireg.diagnostics import plug_in, population_risk, sign_switch, sure_curve, weak_spectrum

MU = np.array([4.0, 3.0, 2.2, 1.5, 1.0, 0.7, 0.45, 0.28, 0.18, 0.11, 0.07, 0.04])
BETA = np.array([0.08, 0.08, 0.06, 0.05, 0.05, 0.04, 0.10, 0.16, 0.28, 0.36, 0.44, 0.52])


@pytest.mark.parametrize("tau0,sigma", [(0.2, 0.15), (0.1, 0.5), (0.05, 0.3)])
def test_sign_switch_is_numerical_derivative_of_risk(tau0, sigma):
    h = 1e-6
    num = (population_risk(tau0 + h, MU, BETA, sigma**2, 48) - population_risk(tau0 - h, MU, BETA, sigma**2, 48)) / (2 * h)
    assert sign_switch(tau0, MU, BETA, sigma**2, 48) == pytest.approx(float(num), rel=1e-6)


def test_population_risk_against_monte_carlo():
    # R(η) is E‖Σ^{1/2}(β̄ − β)‖² where β̄ = (Σ + ηI)^{-1}(Σβ + X^Tε/n): the "population Gram" ridge,
    # fed the sample noise term only; simulate that directly.
    rng = np.random.default_rng(0)
    eta, sigma, n = 0.1, 0.5, 48
    S = np.diag(MU)
    errs = []
    for _ in range(4000):
        X = rng.standard_normal((n, MU.size)) * np.sqrt(MU)
        eps = sigma * rng.standard_normal(n)
        b = np.linalg.solve(S + eta * np.eye(MU.size), S @ BETA + X.T @ eps / n)
        errs.append((b - BETA) @ S @ (b - BETA))
    se = np.std(errs) / np.sqrt(len(errs))
    assert abs(np.mean(errs) - population_risk(eta, MU, BETA, sigma**2, n)) < 4 * se


def test_weak_spectrum_by_hand():
    w = weak_spectrum(MU, BETA, -0.02, 0.2)
    weak = MU <= 0.2
    assert w.weak.sum() == 4
    assert w.rho_W == pytest.approx((BETA[weak] ** 2).sum() / (BETA**2).sum())
    bias = MU * 0.02**2 * BETA**2 / (MU - 0.02) ** 2
    assert w.weak_bias_share == pytest.approx(bias[weak].sum() / bias.sum())


def test_sure_curve_matches_definition():
    rng = np.random.default_rng(1)
    n, p, s2 = 40, 6, 0.3
    X = rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + np.sqrt(s2) * rng.standard_normal(n)
    mu_min = np.linalg.eigvalsh(X.T @ X / n).min()
    lams = np.array([-0.5 * mu_min, 0.0, 0.3, -2 * mu_min])
    got = sure_curve(X, y, lams, s2)
    for lam, g in zip(lams[:3], got[:3]):
        H = X @ np.linalg.solve(X.T @ X / n + lam * np.eye(p), X.T / n)  # hat matrix
        want = np.mean((y - H @ y) ** 2) + 2 * s2 * np.trace(H) / n - s2
        assert g == pytest.approx(want, rel=1e-10)
    assert np.isinf(got[3])
    # with an intercept: centre both and add 1 to df
    got_i = sure_curve(X + 3.0, y + 1.0, lams[:3], s2, fit_intercept=True)
    Xc, yc = X - X.mean(0), y - y.mean()
    for lam, g in zip(lams[:3], got_i):
        H = Xc @ np.linalg.solve(Xc.T @ Xc / n + lam * np.eye(p), Xc.T / n)
        want = np.mean((yc - H @ yc) ** 2) + 2 * s2 * (np.trace(H) + 1) / n - s2
        assert g == pytest.approx(want, rel=1e-10)


def test_plug_in_recovers_ols_in_eigenbasis():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.standard_normal(50)
    pi = plug_in(X, y, fit_intercept=False, sigma2=0.01)
    w, V = np.linalg.eigh(X.T @ X / 50)
    ols = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(np.sort(pi.mu), np.sort(w), rtol=1e-10)
    np.testing.assert_allclose(np.sort(np.abs(pi.beta)), np.sort(np.abs(V.T @ ols)), rtol=1e-8)
    # population risk with the plug-in values equals the same formula in the original basis (ridge bias)
    lam = 0.3
    b = np.linalg.solve(X.T @ X / 50 + lam * np.eye(4), X.T @ X / 50 @ ols)
    bias = (b - ols) @ (X.T @ X / 50) @ (b - ols)
    assert population_risk(lam, pi.mu, pi.beta, 0.0, 50) == pytest.approx(bias, rel=1e-8)
    assert plug_in(X, y, fit_intercept=False).sigma2 > 0  # estimated σ² via antireg.linear
