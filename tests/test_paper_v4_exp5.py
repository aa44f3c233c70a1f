"""v4 Exp 5 (antireg.paper.v4_exp5) against independent oracles: the design and signal against numpy /
sklearn, SURE / LOO / the test-RMSE oracle against brute-force refits over the grid, the split sizes,
determinism, and a tiny run through the driver. Diabetes is bundled with scikit-learn; the other data
sets come from ANTIREG_DATA_DIR (tests needing them skip when it is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from antireg.experiments.config import ConfigError
from antireg.paper import EXPERIMENTS
from antireg.paper.config import PaperCfg, load_paper_config, validate
from antireg.paper.driver import run_paper
from antireg.paper.v4_exp5 import design, draw, signal

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANTIREG_DATA_DIR") or REPO.parent / "shared" / "data")
EXP = EXPERIMENTS["v4_exp5"]


def _cfg(reps: int = 2, **options) -> PaperCfg:
    return validate(PaperCfg(paper="v4_exp5", replications=reps, options=options))


def _need(*relpaths: str) -> str:
    for rel in relpaths:
        if not (SHARED / rel).is_file():
            pytest.skip(f"data file {SHARED / rel} not available (set ANTIREG_DATA_DIR)")
    return str(SHARED)


# ------------------------------------------------------------------ config, cells, design

def test_packaged_config_is_the_paper_design_and_bad_options_are_refused():
    cfg = load_paper_config("v4_exp5")
    o = cfg.options
    assert cfg.replications == 20 and o["noise_stds"] == [0.2, 0.5] and o["fractions"] == [0.02, 0.05, 0.1]
    assert o["datasets"] == ["california", "diabetes", "abalone", "concrete", "wine", "energy", "airfoil"]
    assert (o["test_fraction"], o["min_train"], o["tau0_factor"]) == (0.3, 18, 0.75)
    with pytest.raises(ConfigError, match="fractions"):
        _cfg(fractions=[0.05, 1.5])
    with pytest.raises(ConfigError, match="datasets"):
        _cfg(datasets=["mnist"])
    with pytest.raises(ConfigError, match="unknown key"):
        _cfg(repeats=3)


def test_cells_have_the_stated_sizes_counts_and_clipping():
    cfg = _cfg(3, datasets=["diabetes"], fractions=[0.02, 0.10, 0.999])
    cells = EXP.cells(cfg, None)
    assert len(cells) == 3 * 3 * 2  # fractions × alignments × noise levels
    n_test, pool = round(0.3 * 442), 442 - round(0.3 * 442)
    by_frac = {c["fraction"]: c for c in cells}
    assert all(c["n_test"] == n_test == 133 and c["replications"] == 3 for c in cells)
    assert by_frac[0.02]["n_train"] == 18  # round(0.02·309) = 6, raised to the minimum
    assert by_frac[0.10]["n_train"] == round(0.10 * pool) == 31
    assert by_frac[0.999]["n_train"] == pool - 2  # round(0.999·309) = 309, capped at pool − 2
    assert {(c["alignment"], c["noise_std"]) for c in cells} == {(a, s) for a in ("strong", "weak", "balanced")
                                                                  for s in (0.2, 0.5)}
    X, y, Xt, yt = draw(by_frac[0.999], 0, None)
    assert X.shape == (307, 10) and Xt.shape == (133, 10) and len(y) == 307 and len(yt) == 133
    # train and test rows are disjoint rows of Z
    Z, _ = design("diabetes", None)
    rows = lambda A: {tuple(r) for r in np.round(A, 12)}
    assert not rows(X) & rows(Xt) and rows(X) | rows(Xt) <= rows(Z)


def test_all_seven_data_sets_give_126_cells():
    data_dir = _need("california_housing/cal_housing.data", "abalone/abalone.data", "concrete/Concrete_Data.xls",
                     "wine_quality/winequality-red.csv", "wine_quality/winequality-white.csv",
                     "energy_efficiency/ENB2012_data.xlsx", "airfoil/airfoil_self_noise.dat")
    cells = EXP.cells(load_paper_config("v4_exp5"), data_dir)
    assert len(cells) == 7 * 3 * 2 * 3
    for c in cells:
        pool = c["n_total"] - c["n_test"]
        assert c["n_test"] == round(0.3 * c["n_total"])
        assert c["n_train"] == min(max(round(c["fraction"] * pool), 18), pool - 2)
    # abalone's three Sex indicators sum to 1 and energy's surface area = wall + 2 · roof: one fewer component
    assert {ds: design(ds, data_dir)[1].size for ds in ("abalone", "energy", "wine")} == {
        "abalone": 9, "energy": 7, "wine": 12}


def test_design_and_signal_against_numpy():
    from sklearn.datasets import load_diabetes

    A = StandardScaler().fit_transform(load_diabetes().data)
    mu_np = np.linalg.eigvalsh(np.cov(A.T, bias=True))[::-1]
    Z, mu = design("diabetes", None)
    np.testing.assert_allclose(mu, mu_np, rtol=1e-10)
    np.testing.assert_allclose(Z.T @ Z / len(Z), np.diag(mu_np), atol=1e-10)  # uncorrelated PCA scores
    base = np.geomspace(1, 0.15, 10)
    for alignment, shape in (("strong", base), ("weak", base[::-1]), ("balanced", np.ones(10))):
        b = signal(alignment, mu)
        assert mu_np @ b**2 == pytest.approx(1.0, rel=1e-10)
        assert np.var(Z @ b) == pytest.approx(1.0, rel=1e-10)  # signal variance 1 on the full data
        np.testing.assert_allclose(b / b[0], shape / shape[0], rtol=1e-12)


# ------------------------------------------------------------------ selectors and oracle vs brute force

def _ridge(X, y, lam):
    n = len(X)
    return np.linalg.solve(X.T @ X / n + lam * np.eye(X.shape[1]), X.T @ y / n)


def _sure(X, y, lam, s2):
    n = len(X)
    H = X @ np.linalg.solve(X.T @ X + n * lam * np.eye(X.shape[1]), X.T)
    return np.sum((y - H @ y) ** 2) / n + 2 * s2 * np.trace(H) / n - s2


def _loo(X, y, lam):
    keep = np.ones(len(X), bool)
    errs = []
    for i in range(len(X)):
        keep[i] = False
        errs.append(y[i] - X[i] @ np.linalg.solve(X[keep].T @ X[keep] + len(X) * lam * np.eye(X.shape[1]),
                                                    X[keep].T @ y[keep]))  # α = n·λ of the full fit
        keep[i] = True
    return np.mean(np.square(errs))


def test_selectors_and_oracle_equal_brute_force_refits_over_the_grid():
    cfg = _cfg(2, datasets=["diabetes"], alignments=["weak"], noise_stds=[0.5], fractions=[0.10])
    (cell,) = EXP.cells(cfg, None)
    rows = pd.DataFrame(EXP.compute(cell, None)).set_index(["rep", "selector"])
    t0 = 0.75 * np.median(design("diabetes", None)[1])
    pos = t0 * (1 + np.r_[0, np.logspace(-3, 1, 28)])
    full = np.r_[t0 * (1 - np.r_[0.95, 0.90, 0.85, np.linspace(0.75, 0.05, 28)]), pos]
    assert full.size == 60 and full.min() == pytest.approx(0.05 * t0)
    for rep in range(2):
        X, y, Xt, yt = draw(cell, rep, None)
        n = len(X)
        mu_min = np.linalg.eigvalsh(X.T @ X / n).min()
        neg = np.r_[full, -mu_min * np.array([0.95, 0.90, 0.75, 0.50, 0.25, 0.0])]
        rmse = {lam: np.sqrt(np.mean((yt - Xt @ _ridge(X, y, lam)) ** 2)) for lam in neg}
        s2_hat = np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2) / (n - X.shape[1])
        criteria = {"sure_true_sigma": (full, lambda lam: _sure(X, y, lam, 0.25)),
                    "sure_estimated_sigma": (neg, lambda lam: _sure(X, y, lam, s2_hat)),
                    "loo": (neg, lambda lam: _loo(X, y, lam))}
        for sel, (grid, crit) in criteria.items():
            r = rows.loc[(rep, sel)]
            assert r.lambda_selected == pytest.approx(min(grid, key=crit), rel=1e-9)
            assert r.lambda_positive == pytest.approx(min(pos, key=crit), rel=1e-9)
            assert r.lambda_oracle == pytest.approx(min(grid, key=rmse.get), rel=1e-9)
            assert r.oracle_rmse == pytest.approx(min(rmse[lam] for lam in grid), rel=1e-9)
            assert r.oracle_at_edge == (r.lambda_oracle == pytest.approx(grid.min(), rel=1e-9))
            assert r.negative_capable_rmse == pytest.approx(rmse[min(grid, key=crit)], rel=1e-9)
            assert r.positive_only_rmse == pytest.approx(rmse[min(pos, key=crit)], rel=1e-9)
            assert r.selector_negative == (r.lambda_selected < t0 * (1 - 1e-12))
            assert r.mu_hat_min == pytest.approx(mu_min, rel=1e-9)
        assert rows.loc[(rep, "sure_true_sigma")].selector_total_negative == False  # noqa: E712 (λ ≥ 0.05·τ₀)


def test_same_seed_same_rows_independent_of_the_rest_of_the_config():
    small = EXP.cells(_cfg(2, datasets=["diabetes"], alignments=["balanced"], noise_stds=[0.2]), None)
    wide = EXP.cells(_cfg(2, datasets=["diabetes"]), None)
    cell = small[0]
    (same,) = [c for c in wide if c == cell]
    assert EXP.compute(cell, None) == EXP.compute(same, None)
    other = EXP.compute({**cell, "seed": 1}, None)
    assert [r["negative_capable_rmse"] for r in other] != [r["negative_capable_rmse"] for r in EXP.compute(cell, None)]
    a, b = draw(cell, 0, None), draw(cell, 1, None)
    assert not np.array_equal(a[1], b[1])  # each repeat its own noise, split and subsample


# ------------------------------------------------------------------ end to end through the driver

def test_tiny_run_through_the_driver_writes_both_tables_and_the_figure(tmp_path):
    datasets = ["diabetes"] + (["airfoil"] if (SHARED / "airfoil/airfoil_self_noise.dat").is_file() else [])
    cfg = _cfg(2, datasets=datasets)
    res = run_paper(cfg, tmp_path, data_dir=SHARED, progress=False)
    main, by_frac = res.tables["v4_exp5"], res.tables["v4_exp5_by_fraction"]
    cols = ["dataset", "alignment", "noise", "selector", "rho_W", "oracle_negative_rate", "selector_negative_rate",
            "positive_only_rmse", "negative_capable_rmse", "gain_pct", "gap_to_oracle", "win_rate",
            "gain_pct_ci", "gap_to_oracle_ci", "total_negative_rate", "scale"]
    assert set(cols) <= set(main) and list(pd.read_csv(res.paths["v4_exp5"]).columns) == list(main.columns)
    assert len(main) == len(datasets) * 3 * 2 * 3 and (main.runs == 2 * 3).all()  # repeats × fractions
    assert len(by_frac) == 3 * 3 * 3 and (by_frac.runs == len(datasets) * 2 * 2).all()
    assert main.scale.eq("per_sample").all()
    rates = main.filter(like="_rate")
    assert ((rates >= 0) & (rates <= 1)).all().all()
    assert (main[main.selector == "sure_true_sigma"].total_negative_rate == 0).all()
    assert (main.gap_to_oracle >= -1e-12).all()  # the oracle is the best of the selector's own grid
    assert (main.rho_W > 0).all() and (main.rho_W < 1).all()
    assert json.loads(res.config_path.read_text())["tables"] == ["v4_exp5", "v4_exp5_by_fraction"]
    (png, svg, caption), = EXP.figures(res.tables, tmp_path)
    assert png.stat().st_size > 10_000 and svg.is_file() and "gain" in caption
    rerun = run_paper(cfg, tmp_path, data_dir=SHARED, progress=False)  # resumes from the cache
    assert rerun.computed == 0 and rerun.tables["v4_exp5"].equals(main)
