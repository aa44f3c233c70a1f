"""Edge marks of the summary: where each hyperparameter chosen on validation sits in its grid."""

import numpy as np
import pandas as pd
import pytest

from antireg.experiments import ExperimentCfg, run_sweep
from antireg.experiments.aggregate import edge_of, edge_warnings, summarize


def _runs(method, ablation, grid, val, fraction=0.5, seeds=(0, 1), **extra):
    """Hand-built run rows: one per seed per grid point ``(lambda0, decay, rule_params)``, with
    validation RMSE ``val[i]`` for grid point i (plus a seed-dependent wobble that keeps the order)."""
    rows = []
    for (lam0, decay, params), v in zip(grid, val):
        for seed in seeds:
            rows.append(dict(
                experiment="hand", dataset="d", method=method, ablation=ablation, optimizer="sgd",
                fraction=fraction, seed=seed, n_train=100, lambda0=lam0, decay=decay, rule_params=params,
                val_rmse=v + 0.01 * seed, test_rmse=v, diverged=False, **extra,
            ))  # fmt: skip
    return rows


def _row(summary, method, ablation="none", fraction=0.5):
    hit = summary[(summary["method"] == method) & (summary["ablation"] == ablation) & (summary["fraction"] == fraction)]
    assert len(hit) == 1
    return hit.iloc[0]


@pytest.mark.parametrize(
    "value, grid, want",
    [(0.1, [0.1, 1, 10], "low"), (10, [10, 1, 0.1], "high"), (1, [0.1, 1, 10], ""), (3, [3], "fixed"),
     (3, [3, 3], "fixed"), (0.5, [0.5, 2], "low"), (2, [0.5, 2], "high")],
)  # fmt: skip
def test_edge_of(value, grid, want):
    assert edge_of(value, grid) == want


def test_hand_built_summary_marks_each_cell_against_its_own_grid():
    lam = [(-0.001, 1.0, "-"), (-0.01, 1.0, "-"), (-0.1, 1.0, "-")]
    rows = (
        _runs("ar", "none", lam, [1.0, 2.0, 3.0], fraction=0.5)  # smallest |λ₀| best
        + _runs("ar", "none", lam, [3.0, 1.0, 2.0], fraction=1.0)  # interior
        + _runs("ar", "l2", [(0.001, 1.0, "-"), (0.01, 1.0, "-"), (0.1, 1.0, "-")], [3.0, 2.0, 1.0])
        + _runs("ar", "no_grad_clip", [(-0.01, a, "-") for a in (0.0, 0.5, 1.0)], [1.0, 2.0, 3.0])
        + _runs("ar", "no_trust_region", [(-0.01, a, "-") for a in (0.0, 0.5, 1.0)], [3.0, 2.0, 1.0])
        + _runs("erm", "none", [(0.0, 0.0, "-")], [2.5])
        + _runs("sam", "none", [(0.0, 0.0, f"rho={r}") for r in (0.01, 0.05, 0.1)], [3.0, 2.0, 1.0])
        + _runs("gsam", "none", [(0.0, 0.0, f"alpha={a},rho=0.05") for a in (0.1, 0.3)], [1.0, 2.0])
        + _runs("ar+sam", "none", [(-0.01, 1.0, f"rho={r}") for r in (0.01, 0.05, 0.1)], [2.0, 1.0, 3.0])
    )
    summary = summarize(pd.DataFrame(rows), metrics=["test_rmse"])
    marks = {(r.method, r.ablation, r.fraction): (r.lambda0_at_edge, r.decay_at_edge, r.params_at_edge)
             for r in summary.itertuples()}  # fmt: skip
    assert marks == {
        ("ar", "none", 0.5): ("low", "fixed", ""),  # per cell: the same grid is interior at fraction 1
        ("ar", "none", 1.0): ("", "fixed", ""),
        ("ar", "l2", 0.5): ("high", "fixed", ""),
        ("ar", "no_grad_clip", 0.5): ("fixed", "low", ""),
        ("ar", "no_trust_region", 0.5): ("fixed", "high", ""),
        ("erm", "none", 0.5): ("fixed", "fixed", ""),
        ("sam", "none", 0.5): ("fixed", "fixed", "rho=high"),
        ("gsam", "none", 0.5): ("fixed", "fixed", "alpha=low,rho=fixed"),
        ("ar+sam", "none", 0.5): ("fixed", "fixed", ""),
    }
    lines = edge_warnings(summary)
    assert lines == [
        "hand ar/l2/sgd/fraction 0.5: |λ₀| = 0.1 is the largest of its grid; add ar.lambda0 values above 0.1",
        "hand ar/no_grad_clip/sgd/fraction 0.5: decay = 0 (none) is the smallest of its grid and the smallest "
        "allowed; nothing to widen",
        "hand ar/no_trust_region/sgd/fraction 0.5: decay = 1 is the largest of its grid; add ar.decay values above 1",
        "hand ar/none/sgd/fraction 0.5: |λ₀| = 0.001 is the smallest of its grid; add ar.lambda0 values below 0.001",
        "hand gsam/none/sgd/fraction 0.5: alpha = 0.1 is the smallest of its grid; add relatives.gsam.alpha values "
        "below 0.1",
        "hand sam/none/sgd/fraction 0.5: rho = 0.1 is the largest of its grid; add relatives.sam.rho values above 0.1",
    ]


def test_top_of_the_grid_at_the_spectral_bound_is_not_a_widen():
    lam = [(-0.5, 1.0, "-"), (-2.0, 1.0, "-")]
    clamped = _runs("ar", "none", lam, [2.0, 1.0], clamped=True, lambda0_unit="absolute")
    partly = _runs("ar", "none", lam, [2.0, 1.0], fraction=1.0, lambda0_unit="absolute")
    partly[-1]["clamped"] = True  # one of the two chosen seeds only: larger |λ₀| may still change the other
    bound_unit = _runs("ar", "no_spectral_clamp", [(-0.5, 1.0, "-"), (-1.0, 1.0, "-")], [2.0, 1.0],
                       clamped=False, lambda0_unit="bound")  # fmt: skip
    l2 = _runs("ar", "l2", [(0.5, 1.0, "-"), (2.0, 1.0, "-")], [2.0, 1.0], clamped=False, lambda0_unit="bound")
    summary = summarize(pd.DataFrame(clamped + partly + bound_unit + l2), metrics=["test_rmse"])
    assert _row(summary, "ar", "none")["lambda0_at_edge"] == "bound"
    assert _row(summary, "ar", "none", fraction=1.0)["lambda0_at_edge"] == "high"
    assert _row(summary, "ar", "no_spectral_clamp")["lambda0_at_edge"] == "bound"  # c = 1: the bound itself
    assert _row(summary, "ar", "l2")["lambda0_at_edge"] == "high"  # ridge has no bound above
    lines = edge_warnings(summary)
    assert "hand ar/none/sgd/fraction 0.5: |λ₀| = 2, the largest of its grid, reached the spectral bound; nothing to widen" in lines
    assert sum("reached the spectral bound" in line for line in lines) == 2
    assert sum("add ar.lambda0 values above 2" in line for line in lines) == 2  # ar/none at 1.0, l2


def test_bottom_of_the_grid_that_equals_the_baseline_is_lambda_to_zero():
    lam = [(-1e-5, 1.0, "-"), (-1e-3, 1.0, "-")]
    rows = (
        _runs("erm", "none", [(0.0, 0.0, "-")], [2.0]) + _runs("erm", "none", [(0.0, 0.0, "-")], [2.0], fraction=1.0)
        + _runs("ar", "none", lam, [2.0 * (1 + 0.9e-3), 3.0])  # within 0.1% of the baseline: λ → 0
        + _runs("ar", "none", lam, [2.0 * (1 - 1.1e-3), 3.0], fraction=1.0)  # better than λ = 0 by more: widen
        + _runs("ar", "l2", [(1e-5, 1.0, "-"), (1e-3, 1.0, "-")], [2.0, 3.0])  # ridge: λ → 0⁺ is not AR's end
    )  # fmt: skip
    summary = summarize(pd.DataFrame(rows), metrics=["test_rmse"])
    assert _row(summary, "ar", "none")["lambda0_at_edge"] == "zero"
    assert _row(summary, "ar", "none", fraction=1.0)["lambda0_at_edge"] == "low"
    assert _row(summary, "ar", "l2")["lambda0_at_edge"] == "low"
    assert edge_warnings(summary)[1] == (
        "hand ar/none/sgd/fraction 0.5: |λ₀| = 1e-05, the smallest of its grid, already matches the λ = 0 "
        "baseline on validation (within 0.1%): the best is no anti-regularization; nothing to widen"
    )


def test_edge_warnings_read_back_from_csv(tmp_path):
    summary = summarize(pd.DataFrame(_runs("ar", "none", [(-0.1, 1.0, "-"), (-1.0, 1.0, "-")], [1.0, 2.0])),
                        metrics=["test_rmse"])  # fmt: skip
    summary.to_csv(tmp_path / "s.csv", index=False)
    again = pd.read_csv(tmp_path / "s.csv")  # "" comes back as NaN
    assert edge_warnings(again) == edge_warnings(summary) and len(edge_warnings(summary)) == 1
    assert edge_warnings(pd.DataFrame()) == []


def test_real_sweep_marks_the_edges_it_must(tmp_path):
    """Linear model on diabetes, where the answer is known without the marks.

    ``l2``: per-sample λ ≥ 1 on standardised features already shrinks far past the optimum,
    so more shrinkage is worse and the smallest λ₀ wins (low edge); at fraction 1 the decay
    (n₀/n)^α with α = 0.5 shrinks less than α = 0, so α = 0.5 wins (high edge), while at the
    smallest fraction n = n₀ makes α irrelevant (tie, so α = 0, the smallest allowed).
    AR: every |λ₀| ≥ 1 lies far beyond the spectral bound μ_min/n, so the clamp gives every
    AR run the same λ: the top of the grid has reached the bound.
    """
    cfg = ExperimentCfg.model_validate({
        "experiment": "edges", "dataset": {"name": "diabetes"}, "fractions": [0.2, 1.0], "seeds": [0, 1],
        "model": {"kind": "linear"}, "optimizers": {"sgd": {"lr": 0.05}}, "training": {"epochs": 15},
        "ar": {"lambda0": [1.0, 3.0, 10.0], "decay": [0.0, 0.5]}, "ablations": ["none", "l2"],
    })  # fmt: skip
    result = run_sweep(cfg, tmp_path, progress=False)
    runs, summary = result.runs, pd.read_csv(result.summary_csv)
    ar = runs[(runs["method"] == "ar") & (runs["ablation"] == "none")]
    assert ar["clamped"].all() and not ar["diverged"].any()
    for _, cell in ar.groupby(["fraction", "seed"]):  # the clamp made the runs of a condition identical
        np.testing.assert_allclose(cell["val_rmse"], cell["val_rmse"].iloc[0], rtol=1e-12)
    for fraction in (0.2, 1.0):
        assert _row(summary, "ar", "none", fraction)["lambda0_at_edge"] == "bound"
        l2 = _row(summary, "ar", "l2", fraction)
        assert (l2["lambda0"], l2["lambda0_at_edge"]) == (1.0, "low")
        assert _row(summary, "erm", "none", fraction)[["lambda0_at_edge", "decay_at_edge"]].tolist() == ["fixed"] * 2
    assert _row(summary, "ar", "l2", 1.0)[["decay", "decay_at_edge"]].tolist() == [0.5, "high"]
    assert _row(summary, "ar", "l2", 0.2)[["decay", "decay_at_edge"]].tolist() == [0.0, "low"]
    lines = edge_warnings(summary)
    assert "edges ar/l2/sgd/fraction 1: |λ₀| = 1 is the smallest of its grid; add ar.lambda0 values below 1" in lines
    assert "edges ar/l2/sgd/fraction 1: decay = 0.5 is the largest of its grid; add ar.decay values above 0.5" in lines
    assert sum("reached the spectral bound" in line for line in lines) == 2
