"""antireg.lam: a run's λ against hand-computed values, against the runner's resolution
before λ had its own module (kept here as the oracle, bit for bit), and bad input."""

import itertools
import math

import numpy as np
import pytest

from antireg import lam, spectral

EIGS = np.array([4.0, 2.0, 1.0])  # μ_min = 1


def test_bound_unit_and_clamp_by_hand():
    # λ₀ = 10 bound units on n = 10 points: λ = −10·(1/10) = −1, far past the bound −0.9·1/10
    r = lam.resolve("constant", -10.0, 10, unit="bound", eta=0.1, eigs=EIGS)
    assert (r.lambda_requested, r.clamped) == (-1.0, True)
    assert r.lambda_n == pytest.approx(-0.09, rel=1e-15) and r.lambda_bound == pytest.approx(-0.09, rel=1e-15)
    assert r.df_per_n == pytest.approx((4 / 3.1 + 2 / 1.1 + 1 / 0.1) / 10, rel=1e-12)
    assert r.alpha == pytest.approx(-0.9, rel=1e-15)  # α = n·λ


def test_power_law_by_hand_with_and_without_the_clamp():
    r = lam.resolve("power_law", -0.5, 10, decay=1.0, n0=5, eta=None, eigs=EIGS)
    assert (r.lambda_n, r.lambda_requested, r.clamped) == (-0.25, -0.25, False)
    assert r.lambda_bound == pytest.approx(-0.09) and math.isnan(r.df_per_n)  # past the pole −μ_min/n
    r = lam.resolve("power_law", 0.5, 20, decay=0.5, n0=5, eta=0.1, eigs=EIGS)  # ridge: never clamped
    assert r.lambda_n == pytest.approx(0.25, rel=1e-15) and not r.clamped
    assert r.df_per_n == pytest.approx(sum(m / (m + 5.0) for m in EIGS) / 20, rel=1e-12)


def test_without_a_spectrum_nothing_is_bounded():
    r = lam.resolve("power_law", -0.01, 50, decay=1.0, n0=100)
    assert (r.lambda_n, r.clamped) == (-0.02, False) and math.isnan(r.lambda_bound) and math.isnan(r.df_per_n)
    cols = lam.resolve("zero", 0.0, 7).columns()
    assert list(cols) == ["lambda_n", "lambda_requested", "clamped", "lambda_bound", "df_per_n"]
    assert (cols["lambda_n"], cols["clamped"]) == (0.0, False) and math.isnan(cols["lambda_bound"])


def test_dof_target_hits_its_degrees_of_freedom():
    X = np.random.default_rng(0).normal(size=(40, 5))
    eigs = spectral.gram_spectrum(X, fit_intercept=False)
    r = lam.resolve("dof_target", 0.0, 40, n0=40, delta=0.1, eta=0.1, eigs=eigs)
    assert r.df_per_n == pytest.approx(1.1 * 5 / 40, rel=1e-8) and r.lambda_n < 0 and not r.clamped


def test_sign_and_alpha_conversion():
    assert lam.signed(0.3) == -0.3 and lam.signed(0.3, l2=True) == 0.3
    assert lam.lambda_to_alpha(-0.02, 50) == -1.0 and lam.alpha_to_lambda(-1.0, 50) == -0.02
    with pytest.raises(ValueError):
        lam.alpha_to_lambda(1.0, 0)


@pytest.mark.parametrize("bad", [
    lambda: lam.resolve("constant", -1.0, 10, unit="bound"),  # no spectrum to measure against
    lambda: lam.resolve("dof_target", 0.0, 10),
    lambda: lam.resolve("cosine", -1.0, 10),
    lambda: lam.resolve("power_law", -1.0, 0, decay=1.0, n0=5),
    lambda: lam.resolve("constant", -1.0, 10, eta=1.5, eigs=EIGS),
    lambda: lam.clamp(math.inf, EIGS, 10),
])  # fmt: skip
def test_bad_input_is_a_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def _old_resolve(schedule, lambda0, n, unit, alpha, n0, kappa, delta, eta, eigs):
    """runner.resolve_lambda as it was at commit 40c3a39 (spec fields as arguments)."""
    from antireg.safeguards import spectral_clamp

    def bound_unit(eigs, n):
        return float(np.min(eigs)) / n

    lam0 = lambda0 * (bound_unit(eigs, n) if unit == "bound" else 1.0)
    if schedule == "zero":
        value = 0.0
    elif schedule == "constant":
        value = float(lam0)
    elif schedule == "power_law":
        value = float(lam0) * (n0 / n) ** alpha
    else:
        kappa = kappa if kappa is not None else (1.0 + delta) * float(spectral.dof(eigs, 0.0)) / n0
        value = spectral.alpha_for_dof(eigs, kappa * n, eta=eta or spectral.ETA)[0] / n
    requested, clamped = value, False
    if eigs is not None and eta is not None:
        value, clamped = spectral_clamp(value, eigs, n, eta=eta)
    known = eigs is not None
    safe = known and value > -bound_unit(eigs, n)
    return {
        "lambda_n": value, "lambda_requested": requested, "clamped": clamped,
        "lambda_bound": spectral.safe_alpha_min(eigs, eta or spectral.ETA) / n if known else math.nan,
        "df_per_n": float(spectral.dof(eigs, n * value)) / n if safe else math.nan,
    }  # fmt: skip


def test_bit_identical_to_the_runner_before_it():
    rng = np.random.default_rng(3)
    spectra = [None, np.sort(rng.uniform(0.01, 50.0, size=7))[::-1], spectral.gram_spectrum(rng.normal(size=(30, 4)))]
    cases = itertools.product(["zero", "constant", "power_law", "dof_target"], [-10.0, -0.37, 0.02], [13, 144],
                              ["absolute", "bound"], [None, 0.1, 0.3], spectra)  # fmt: skip
    checked = 0
    for schedule, lambda0, n, unit, eta, eigs in cases:
        if eigs is None and (unit == "bound" or schedule == "dof_target"):
            continue
        args = dict(unit=unit, decay=0.7, n0=11, kappa=None, delta=0.1, eta=eta, eigs=eigs)
        want = _old_resolve(schedule, lambda0, n, unit, 0.7, 11, None, 0.1, eta, eigs)
        got = lam.resolve(schedule, lambda0, n, **args).columns()
        assert list(got) == list(want)
        for k in want:  # bit for bit: equal, or both NaN
            assert got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])), (schedule, lambda0, n, unit, eta, k)
        checked += 1
    assert checked > 100
