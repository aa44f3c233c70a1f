"""Stress: λ₀ in units of the spectral bound, and the safeguards against divergence past it."""

import numpy as np
import pytest
import yaml

from antireg.data import make_split
from antireg.experiments import ConfigError, ExperimentCfg, expand, load_config, run_sweep
from antireg.experiments.runner import dataset_for, prepare

# Linear model on diabetes (n = 310 at fraction 1): μ_min/n ≈ 0.009, μ_max/n ≈ 3.8, so SGD at
# lr 0.5 with momentum is stable for ERM while 10× the bound overflows within 400 steps.
STRESS = {
    "experiment": "stress",
    "dataset": {"name": "diabetes"},
    "fractions": [1.0],
    "seeds": [0, 1],
    "model": {"kind": "linear"},
    "optimizers": {"sgd": {"lr": 0.5, "momentum": 0.9}},
    "training": {"epochs": 400},
    "ar": {"schedule": "constant", "lambda0": [0.5, 10.0], "lambda0_unit": "bound"},
    "ablations": ["none", "no_safeguards"],
}


def _cfg(**changes) -> ExperimentCfg:
    return ExperimentCfg.model_validate({**STRESS, **changes})


def _mu_min_over_n(spec) -> float:
    """μ_min/n of the Gram matrix of [X, 1] on the run's training set, by numpy alone (float64;
    the runner sees float32 features, hence rel=1e-6 below)."""
    split = make_split(dataset_for(spec, "unused"), spec.seed, spec.fraction, spec.split.val_frac, spec.split.test_frac)
    A = np.hstack([split.X_train, np.ones((len(split.X_train), 1))])
    return float(np.linalg.eigvalsh(A.T @ A).min()) / len(A)


def test_guarded_runs_never_diverge_and_unguarded_ones_past_the_bound_do(tmp_path):
    runs = run_sweep(_cfg(), tmp_path, progress=False).runs
    ar = runs[runs["method"] == "ar"]
    assert not runs.loc[runs["method"] == "erm", "diverged"].any()
    assert not ar.loc[ar["ablation"] == "none", "diverged"].any()  # even at 10× the bound
    unguarded = ar[ar["ablation"] == "no_safeguards"]
    # past the bound ½·MSE + λ·½‖θ‖² is unbounded below: gradient descent must blow up
    assert unguarded.loc[unguarded["lambda0"] == -10.0, "diverged"].all()
    assert not unguarded.loc[unguarded["lambda0"] == -0.5, "diverged"].any()
    # the per-run CSV gives divergence per (ablation, λ₀)
    counts = runs.groupby(["ablation", "lambda0"])["diverged"].sum()
    assert counts[("no_safeguards", -10.0)] == 2 and counts.drop(("no_safeguards", -10.0)).sum() == 0


@pytest.mark.parametrize("ablation, clamped", [("none", True), ("no_safeguards", False)])
def test_bound_unit_resolves_against_numpy_eigenvalues(ablation, clamped):
    spec = next(s for s in expand(_cfg(), 442) if s.ablation == ablation and s.lambda0 == -10.0)
    bound = _mu_min_over_n(spec)
    lam = prepare(spec, "unused").lam
    assert lam.lambda_requested == pytest.approx(-10.0 * bound, rel=1e-6)
    assert lam.clamped == clamped
    assert lam.lambda_n == pytest.approx(-0.9 * bound if clamped else -10.0 * bound, rel=1e-6)
    assert lam.lambda_bound == pytest.approx(-0.9 * bound, rel=1e-6)
    assert np.isnan(lam.df_per_n) != clamped  # df(λ) is undefined past the bound


def test_bound_unit_scales_the_power_law():
    cfg = _cfg(fractions=[0.5, 1.0], ar={"lambda0": [2.0], "alpha": [1.0], "lambda0_unit": "bound"}, ablations=["no_safeguards"])
    for spec in (s for s in expand(cfg, 442) if s.method == "ar"):
        want = -2.0 * _mu_min_over_n(spec) * spec.n0 / spec.n_train
        assert prepare(spec, "unused").lam.lambda_n == pytest.approx(want, rel=1e-6)


def test_safeguard_ablations_switch_off_what_they_name():
    cfg = _cfg(ablations=["none", "no_spectral_clamp", "no_grad_clip", "no_trust_region", "no_safeguards"])
    by = {s.ablation: s for s in expand(cfg, 442) if s.method == "ar"}
    on = (by["none"].grad_clip, by["none"].trust_factor, by["none"].spectral_eta)
    assert None not in on
    assert (by["no_spectral_clamp"].grad_clip, by["no_spectral_clamp"].trust_factor, by["no_spectral_clamp"].spectral_eta) == (*on[:2], None)
    assert (by["no_grad_clip"].grad_clip, by["no_trust_region"].trust_factor) == (None, None)
    assert (by["no_safeguards"].grad_clip, by["no_safeguards"].trust_factor, by["no_safeguards"].spectral_eta) == (None,) * 3


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"model": {"kind": "mlp", "width": 8}}, "'bound' needs a spectrum.*ar.ntk: true"),
        ({"model": {"kind": "cnn"}, "dataset": {"name": "digits"}}, "ar.lambda0_unit 'bound' needs a spectrum"),
        ({"ar": {"schedule": "dof_target", "lambda0_unit": "bound"}}, "dof_target does not use"),
    ],
)
def test_bound_unit_without_a_spectrum_or_a_lambda0_is_a_config_error(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        expand(_cfg(**changes), 442)


def test_bound_unit_with_an_ntk_mlp_is_accepted_and_bad_units_are_named(tmp_path):
    specs = expand(_cfg(model={"kind": "mlp", "width": 8}, ar={**STRESS["ar"], "ntk": True}), 442)
    assert {s.lambda0_unit for s in specs if s.method == "ar"} == {"bound"}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**STRESS, "ar": {"lambda0_unit": "bounds"}}))
    with pytest.raises(ConfigError, match="ar.lambda0_unit"):
        load_config(str(path))


def test_packaged_stress_config_spans_the_bound_with_and_without_safeguards():
    cfg = load_config("stress_concrete")
    assert cfg.ar.lambda0_unit == "bound" and cfg.model.kind == "linear" and cfg.add_baseline_zero
    assert min(cfg.ar.lambda0) < 1.0 and max(cfg.ar.lambda0) == 10.0
    assert {"none", "no_spectral_clamp", "no_grad_clip", "no_trust_region", "no_safeguards"} <= set(cfg.ablations)
