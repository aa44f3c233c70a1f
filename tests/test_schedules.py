import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antireg import schedules, spectral


@given(lam0=st.floats(-10, 10), alpha=st.floats(0, 2), n0=st.integers(1, 500), n=st.integers(1, 5000))
@settings(max_examples=100, deadline=None)
def test_power_law_matches_formula(lam0, alpha, n0, n):
    assert schedules.power_law(lam0, alpha, n0)(n) == pytest.approx(lam0 * (n0 / n) ** alpha, rel=1e-12, abs=1e-300)


def test_power_law_is_full_strength_at_n0_and_decays():
    s = schedules.power_law(-0.5, 1.0, 100)
    assert s(100) == -0.5
    assert s(200) == -0.25
    assert abs(s(400)) < abs(s(200)) < abs(s(100))


def test_constant_and_zero():
    assert schedules.constant(-0.3)(7) == -0.3 == schedules.constant(-0.3)(7000)
    assert schedules.zero()(12) == 0.0


@pytest.mark.parametrize("bad", [lambda: schedules.power_law(1, 1, 0), lambda: schedules.power_law(1, -1, 5),
                                 lambda: schedules.power_law(1, 1, 5)(0), lambda: schedules.zero()(0)])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        bad()


def test_dof_target_hits_the_target():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6))
    eigs = spectral.gram_spectrum(X, fit_intercept=False)
    n = 80
    kappa = 6.6 / n  # 10% above the baseline's df = rank = 6
    lam = schedules.dof_target(kappa, eigs)(n)
    assert lam < 0, "raising df above rank needs a negative λ"
    assert float(spectral.dof(eigs, n * lam)) / n == pytest.approx(kappa, rel=1e-8)
    assert schedules.baseline_kappa(eigs, n, 0.1) == pytest.approx(kappa)


def test_dof_target_beyond_reach_stops_at_the_safe_bound():
    eigs = np.array([4.0, 2.0, 1.0])
    lam = schedules.dof_target(100.0, eigs, eta=0.1)(10)
    assert lam * 10 == pytest.approx(spectral.safe_alpha_min(eigs, eta=0.1))
