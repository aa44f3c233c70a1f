"""Kobak et al. (2020) experiments (antireg.paper.kobak) against independent oracles: the NMSE
formula against Monte Carlo, closed-form paths against sklearn Ridge and explicit solves, the CV
curves against sklearn and ARRidgeCV(cv=...), the paper's qualitative claim, and feasibility."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_score

from antireg.experiments.config import ConfigError
from antireg.linear import ARRidgeCV
from antireg.paper import EXPERIMENTS
from antireg.paper.config import PaperCfg, load_paper_config, validate
from antireg.paper.driver import run_paper
from antireg.paper.kobak import (cv_curves, lambda_grid, path_fit, path_predict, ridge_path, toy_beta, toy_draw,
                                 toy_nmse)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANTIREG_DATA_DIR") or REPO.parent / "shared" / "data")


def _cfg(kind: str, reps: int, **options) -> PaperCfg:
    return validate(PaperCfg(paper=kind, replications=reps, options=options))


def _rows(kind: str, cfg: PaperCfg, data_dir=None) -> pd.DataFrame:
    exp = EXPERIMENTS[kind]
    return pd.DataFrame([r for c in exp.cells(cfg, data_dir) for r in exp.compute(c, data_dir)])


# ------------------------------------------------------------------ toy model: formula vs Monte Carlo

def test_toy_beta_and_design_have_the_stated_covariance_and_snr():
    p, rho = 6, 0.1
    sigma = np.eye(p) + rho * np.ones((p, p))
    beta = toy_beta(p, rho, 10.0, 1.0)
    assert beta @ sigma @ beta == pytest.approx(10.0) and np.ptp(beta) == 0
    X, y = toy_draw(np.random.default_rng(0), 400_000, beta, rho, 1.0)
    np.testing.assert_allclose(np.cov(X.T), sigma, atol=0.01)
    assert y.var() == pytest.approx(11.0, rel=0.01)  # βᵀΣβ + σ²


def test_toy_nmse_formula_equals_monte_carlo_test_error():
    p, rho, snr = 50, 0.1, 10.0
    beta = toy_beta(p, rho, snr, 1.0)
    rng = np.random.default_rng(1)
    X, y = toy_draw(rng, 64, beta, rho, 1.0)
    coefs = np.linalg.solve(X.T @ X + 30.0 * np.eye(p), X.T @ y)[:, None]  # one ridge fit, α = 30
    formula = toy_nmse(coefs, beta, rho, snr, 1.0)[0]
    Xt, yt = toy_draw(rng, 400_000, beta, rho, 1.0)
    err = (yt - Xt @ coefs[:, 0]) ** 2
    mc, se = err.mean() / (snr + 1), err.std() / np.sqrt(err.size) / (snr + 1)
    assert abs(formula - mc) < 4 * se and se < 0.005 * mc
    # precise enough to see the spike: the formula without the ρ(1ᵀe)² term is rejected
    assert abs(toy_nmse(coefs, beta, 0.0, snr, 1.0)[0] - mc) > 10 * se


# ------------------------------------------------------------------ closed-form paths vs independent fits

@pytest.mark.parametrize("n, p", [(40, 12), (20, 60)])
def test_ridge_path_matches_sklearn_for_positive_and_explicit_solves_for_negative_alphas(n, p):
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((n, p)), rng.standard_normal((n, 3))
    A = X - X.mean(axis=0)
    s2_min = np.linalg.eigvalsh(A @ A.T if p > n else A.T @ A)[-min(n - 1, p)]  # smallest nonzero
    alphas = np.array([-0.8 * s2_min, -0.3 * s2_min, 0.5, 7.0])
    coefs, intercepts, eigs = ridge_path(X, Y, alphas, fit_intercept=True)
    assert coefs.shape == (p, 4, 3) and intercepts.shape == (4, 3) and eigs.min() == pytest.approx(s2_min)
    for j, a in enumerate(alphas):
        if a > 0:
            ref = Ridge(alpha=a).fit(X, Y)
            np.testing.assert_allclose(coefs[:, j].T, ref.coef_, atol=1e-10)
            np.testing.assert_allclose(intercepts[j], ref.intercept_, atol=1e-10)
        # the minimum-norm stationary point of ‖y − Ab‖² + α‖b‖² on the row space: Aᵀ(AAᵀ + αI)⁺ y_c
        Yc = Y - Y.mean(axis=0)
        G = A @ A.T
        w, V = np.linalg.eigh(G)
        keep = w > 1e-9 * w.max()
        ref = A.T @ (V[:, keep] / (w[keep] + a)) @ V[:, keep].T @ Yc
        np.testing.assert_allclose(coefs[:, j], ref, atol=1e-8)
    # one target as a vector gives (p, m) and (m,)
    c1, i1, _ = ridge_path(X, Y[:, 0], alphas, fit_intercept=True)
    np.testing.assert_allclose(c1, coefs[:, :, 0])
    np.testing.assert_allclose(i1, intercepts[:, 0])


@pytest.mark.parametrize("n, p, t", [(30, 80, 3), (40, 10, 1)])
def test_path_predict_equals_ridge_path_predictions(n, p, t):
    rng = np.random.default_rng(5)
    X, Y, Xt = rng.standard_normal((n, p)), rng.standard_normal((n, t)), rng.standard_normal((7, p))
    eigs = ridge_path(X, Y, np.zeros(1), fit_intercept=True)[2]
    alphas = np.array([-0.5 * eigs.min(), 0.0, 0.3, 30.0])
    coefs, intercepts, _ = ridge_path(X, Y, alphas, fit_intercept=True)
    x_off, y_off, s, Vt, uty = path_fit(X, Y)
    got = path_predict((Xt - x_off) @ Vt.T, s, uty, y_off, alphas)
    np.testing.assert_allclose(got, np.tensordot(Xt, coefs, axes=1) + intercepts, rtol=1e-10, atol=1e-12)


def test_cells_are_cheap_json_parameters_without_data():
    # cells() reads no data and fits nothing (the driver hashes them before it checks its cache)
    for kind in ("kobak_toy", "kobak_mnist_rff", "kobak_liver"):
        cells = EXPERIMENTS[kind].cells(_cfg(kind, 3), "/nonexistent/data/dir")
        assert cells and json.loads(json.dumps(cells)) == cells


def test_mnist_rff_rows_do_not_depend_on_the_chunking():
    if not (SHARED / "mnist/train-images-idx3-ubyte.gz").is_file():
        pytest.skip("MNIST training images not available")
    opts = dict(projections=20, n_test=50, grid={"negative_points": 3, "positive_points": 4})
    one = _rows("kobak_mnist_rff", _cfg("kobak_mnist_rff", 3, chunk=3, **opts), SHARED)
    split = _rows("kobak_mnist_rff", _cfg("kobak_mnist_rff", 3, chunk=1, **opts), SHARED)
    pd.testing.assert_frame_equal(one, split)  # one grid from every replication's bound, in every chunk


def test_lambda_grid_is_increasing_and_stops_at_the_safety_bound():
    g = lambda_grid(200.0, {"negative_points": 4, "eta": 0.1, "positive_min": 0.1, "positive_max": 10.0,
                            "positive_points": 3})
    np.testing.assert_allclose(g, [-180, -135, -90, -45, 0, 0.1, 1.0, 10.0])


# ------------------------------------------------------------------ the paper's claim, and feasibility

def test_toy_optimum_is_negative_at_large_p_and_positive_at_small_p():
    cfg = _cfg("kobak_toy", 20, p_curves=[50, 1000], p_scan=[])
    rows = _rows("kobak_toy", cfg)
    opt = EXPERIMENTS["kobak_toy"].tables(rows, cfg)["kobak_toy_optimum"].set_index("p")
    # p = 50 < n: a clearly positive ridge (theory for isotropic data: α* ≈ pσ²/‖β‖² ≈ 30)
    assert 10 < opt.loc[50, "lambda_opt"] < 100 and opt.loc[50, "nmse_opt"] < 0.5 * opt.loc[50, "nmse_at_zero"]
    # p = 1000 ≫ n: the optimum is negative and well inside the feasible interval
    assert -400 < opt.loc[1000, "lambda_opt"] < -50 and opt.loc[1000, "at_grid_edge"] == "interior"
    assert opt.loc[1000, "nmse_opt"] < opt.loc[1000, "nmse_at_zero"]
    # the table's mean at the optimum against explicit dual-form refits of all 20 replications
    p, lam = 1000, opt.loc[1000, "lambda_opt"]
    beta = toy_beta(p, 0.1, 10.0, 1.0)
    nmse = []
    for r in range(20):
        X, y = toy_draw(np.random.default_rng([0, p, r]), 64, beta, 0.1, 1.0)
        b = X.T @ np.linalg.solve(X @ X.T + lam * np.eye(64), y)  # (XᵀX + λI)⁻¹Xᵀy on the row space, p > n
        nmse.append(toy_nmse(b[:, None], beta, 0.1, 10.0, 1.0)[0])
    assert np.mean(nmse) == pytest.approx(opt.loc[1000, "nmse_opt"], rel=1e-9)


def test_no_grid_point_is_beyond_any_replications_bound():
    cfg = _cfg("kobak_toy", 15, p_curves=[150], p_scan=[56])
    rows = _rows("kobak_toy", cfg)
    for p, g in rows.groupby("p"):
        beta = toy_beta(p, 0.1, 10.0, 1.0)
        s2 = [np.linalg.eigvalsh(X @ X.T if p > 64 else X.T @ X).min()
              for X, _ in (toy_draw(np.random.default_rng([0, p, r]), 64, beta, 0.1, 1.0) for r in range(15))]
        assert g["lambda"].min() == pytest.approx(-0.9 * min(s2)) and (g["lambda"] >= -0.9 * min(s2) - 1e-9).all()
        assert (g.lambda_bound == g["lambda"].min()).all()


# ------------------------------------------------------------------ liver.toxicity CV against sklearn / ARRidgeCV

def _liver():
    if not (SHARED / "liver_toxicity/livertoxicity-gene.txt").is_file():
        pytest.skip("liver.toxicity files not available (set ANTIREG_DATA_DIR)")
    from antireg.paper.kobak import liver_data

    return liver_data(SHARED)


def test_liver_cv_curve_matches_sklearn_and_arridgecv():
    X, Y, _ = _liver()
    X = X[:, :300]  # a smaller p keeps the sklearn refits quick; still p > n
    folds = list(KFold(10, shuffle=True, random_state=3).split(X))
    # smallest nonzero eigenvalue of each centred training fold's AAᵀ ([0] is centring's zero)
    s2_min = min(np.linalg.eigvalsh((X[tr] - X[tr].mean(0)) @ (X[tr] - X[tr].mean(0)).T)[1] for tr, _ in folds)
    lams = lambda_grid(s2_min, {"negative_points": 10, "eta": 0.1, "positive_min": 1.0, "positive_max": 1e5,
                                "positive_points": 15})
    cv = cv_curves(X, Y[:, :2], lams, folds)
    for a in lams[lams > 0][::4]:
        ref = -cross_val_score(Ridge(alpha=a), X, Y[:, 0], cv=folds, scoring="neg_mean_squared_error").mean()
        assert cv[list(lams).index(a), 0] == pytest.approx(ref, rel=1e-8)
    for k in range(2):
        m = ARRidgeCV(alphas=lams, cv=folds, scoring="neg_mean_squared_error", eta=0.01).fit(X, Y[:, k])
        assert m.alpha_ == lams[np.argmin(cv[:, k])]
        assert -m.best_score_ == pytest.approx(cv[:, k].min(), rel=1e-8)


def test_liver_all_genes_optimum_lower_than_with_50_random_genes():
    _liver()
    cfg = _cfg("kobak_liver", 3, grid={"negative_points": 10, "positive_points": 30})
    t = EXPERIMENTS["kobak_liver"].tables(_rows("kobak_liver", cfg, SHARED), cfg)
    best = t["kobak_liver"]
    assert len(best) == 20 and set(best.genes) == {"all 3116", "random 50"}
    allg, rand = best[best.genes == "all 3116"].set_index("response"), best[best.genes == "random 50"].set_index("response")
    # Kobak's finding: with all genes the optimum is much smaller (often negative); with 50 genes positive
    assert (rand.lambda_opt > 0).all() and (allg.lambda_opt < 0).sum() >= 3
    assert (rand.cv_mse_at_zero > 2 * rand.cv_mse_opt).sum() >= 8  # ridgeless with p ≈ n is poor
    assert {"response", "genes", "lambda", "scale", "cv_mse_mean", "cv_mse_ci"} <= set(t["kobak_liver_curves"])
    # the optimum figure: one marker series per gene set at the table's optima, each set's bound dashed
    (ax,) = EXPERIMENTS["kobak_liver"].optimum_figure(best).axes
    series = [ln for ln in ax.lines if ln.get_linestyle() == "None"]
    assert [ln.get_label() for ln in series] == ["all 3116 genes", "random 50 genes"]
    for ln, g in zip(series, (allg, rand)):
        np.testing.assert_array_equal(ln.get_ydata(), g.loc[allg.index, "lambda_opt"])
    bounds = [ln.get_ydata()[0] for ln in ax.lines if ln.get_gid() == "bound"]
    assert bounds == [allg.lambda_bound.min(), rand.lambda_bound.min()] and ax.get_yscale() == "symlog"
    (ax1, ax2) = EXPERIMENTS["kobak_liver"].cv_figure(t["kobak_liver_curves"], best).axes
    assert len([ln for ln in ax1.lines if ln.get_gid() == "optimum"]) == 10


# ------------------------------------------------------------------ MNIST RFF on the real files (tiny)

def test_mnist_rff_predictions_match_an_explicit_refit():
    if not (SHARED / "mnist/train-images-idx3-ubyte.gz").is_file():
        pytest.skip("MNIST training images not available")
    from antireg.paper import kobak

    cfg = _cfg("kobak_mnist_rff", 2, projections=40, n_test=300, grid={"negative_points": 3, "positive_points": 4})
    exp = EXPERIMENTS["kobak_mnist_rff"]
    cells = exp.cells(cfg, SHARED)
    rows = pd.DataFrame(exp.compute(cells[0], SHARED))
    Xpool, ypool, Xt, yt = kobak._mnist(SHARED, 300, "standardized")
    W = kobak._mnist_projection(0, 40, 0.1)
    F, y, mu, sd = kobak._mnist_train(Xpool, ypool, W, 0, 1, 64, True)
    assert F.shape == (64, 80) and np.allclose(F.mean(0), 0) and np.allclose(F.std(0), 1)
    Ft = (kobak.rff(Xt, W) - mu) / sd
    for a in rows.loc[rows.rep == 1, "lambda"]:
        # p = 80 > n - 1 = 63 (centred rank): a dual-form refit, valid for negative α above the bound
        A, yc = F - F.mean(0), y - y.mean()
        b = A.T @ np.linalg.lstsq(A @ A.T + a * np.eye(64), yc, rcond=None)[0] if a != 0 else np.linalg.pinv(A) @ yc
        pred = Ft @ b + y.mean() - F.mean(0) @ b
        got = rows[(rows.rep == 1) & (rows["lambda"] == a)].test_mse.iloc[0]
        assert got == pytest.approx(np.mean((pred - yt) ** 2), rel=1e-6)
    t = exp.tables(rows, cfg)
    main, opt = t["kobak_mnist_rff"], t["kobak_mnist_rff_optimum"]
    assert {"lambda", "scale", "test_mse_mean", "test_mse_ci"} <= set(main)
    assert {"lambda_opt", "test_mse_opt", "test_mse_at_zero"} <= set(opt)
    # the figure: the optimum dot at the table's argmin, the region beyond the bound shaded up to the bound,
    # and an optimum on the grid's edge said in the title (checked both ways on the same table)
    (ax,) = exp.figure(main, opt).axes
    (dot,) = [ln for ln in ax.lines if ln.get_gid() == "optimum"]
    assert dot.get_xdata()[0] == main["lambda"].iloc[main.test_mse_mean.argmin()] == opt.lambda_opt.iloc[0]
    (span,) = [pa for pa in ax.patches if pa.get_gid() == "infeasible"]
    xs = span.get_path().transformed(span.get_patch_transform()).vertices[:, 0]
    assert xs.max() == pytest.approx(main.lambda_bound.iloc[0]) and xs.min() == pytest.approx(ax.get_xlim()[0])
    for edge in ("lower", "interior"):
        (ax,) = exp.figure(main, opt.assign(at_grid_edge=edge)).axes
        assert ("lower edge" in ax.get_title()) == (edge == "lower")


# ------------------------------------------------------------------ configs and the driver

def test_packaged_configs_validate_and_unknown_options_are_refused():
    for name in ("kobak_toy", "kobak_mnist_rff", "kobak_liver"):
        assert load_paper_config(name).paper == name
    with pytest.raises(ConfigError, match="options.p_curvs"):
        validate(PaperCfg(paper="kobak_toy", options={"p_curvs": [50]}))
    with pytest.raises(ConfigError, match="options.grid.eta"):
        validate(PaperCfg(paper="kobak_toy", options={"grid": {"eta": 1.5}}))


def test_driver_writes_the_tables_and_figures(tmp_path):
    cfg = _cfg("kobak_toy", 3, p_curves=[50, 200], p_scan=[100])
    res = run_paper(cfg, tmp_path, progress=False)
    main = pd.read_csv(tmp_path / "results/kobak_toy.csv")
    opt = pd.read_csv(tmp_path / "results/kobak_toy_optimum.csv")
    assert {"p", "lambda", "nmse_mean", "nmse_ci", "scale", "lambda_per_sample"} <= set(main)
    assert {"p", "lambda_opt", "nmse_opt", "nmse_at_zero"} <= set(opt)
    assert sorted(main.p.unique()) == [50, 200] and sorted(opt.p) == [50, 100, 200]
    assert (main.scale == "sklearn_alpha").all() and np.allclose(main.lambda_per_sample, main["lambda"] / 64)
    (png, svg, caption), = EXPERIMENTS["kobak_toy"].figures(res.tables, tmp_path)
    assert png.stat().st_size > 10_000 and svg.is_file() and "sklearn α" in caption
    fig = EXPERIMENTS["kobak_toy"].figure(res.tables["kobak_toy"], res.tables["kobak_toy_optimum"])
    ax, bx = fig.axes
    dots, bounds = _by_gid(ax, "optimum"), _by_gid(ax, "bound")
    assert len(dots) == len(bounds) == 2 and len(ax.collections) == 2  # one CI band per p
    for (p, g), dot, bound in zip(main.groupby("p"), dots, bounds):
        assert dot.get_xdata()[0] == g["lambda"].iloc[g.nmse_mean.argmin()] == opt.set_index("p").lambda_opt[p]
        assert dot.get_ydata()[0] == pytest.approx(g.nmse_mean.min())
        assert bound.get_xdata()[0] == g.lambda_bound.iloc[0] and bound.get_linestyle() == "--"
    scan = bx.lines[0]
    np.testing.assert_array_equal(scan.get_xdata(), opt.p)
    np.testing.assert_array_equal(scan.get_ydata(), opt.lambda_opt)
    zero = [ln for ln in bx.lines if ln.get_linestyle() == "--"]
    assert len(zero) == 1 and list(zero[0].get_ydata()) == [0, 0] and bx.get_yscale() == "symlog"
    assert "sklearn α" in ax.get_xlabel() and "n = 64" in bx.get_xlabel()


def _by_gid(ax, gid):
    return [a for a in (*ax.lines, *ax.patches) if a.get_gid() == gid]


# ------------------------------------------------------------------ the demo (first command)

def test_demo_shows_a_gain_where_expected_and_none_on_diabetes():
    from antireg.paper.demo import CASES, WHY

    cfg = _cfg("demo", 8, toy_p=300)
    rows = _rows("demo", cfg)
    t = EXPERIMENTS["demo"].tables(rows, cfg)["demo"].set_index("case")
    assert list(t.index) == list(CASES)
    assert t.loc["weak_predictors", "verdict"] == "helps" and t.loc["weak_predictors", "gain_pct"] > 5
    assert t.loc["weak_predictors", "negative_alpha_rate"] == 1.0
    assert t.loc["diabetes", "verdict"] == "no difference" and t.loc["diabetes", "negative_alpha_rate"] == 0
    # sklearn's RidgeCV and antireg's ARRidgeCV agree wherever ARRidgeCV stays positive (same LOO, same alphas)
    pos = rows[rows.arridgecv_alpha > 0]
    assert len(pos) >= 8
    np.testing.assert_allclose(pos.ridgecv_alpha, pos.arridgecv_alpha, rtol=1e-12)
    np.testing.assert_allclose(pos.ridgecv_mse, pos.arridgecv_mse, rtol=1e-9)
    text = EXPERIMENTS["demo"].text(t.reset_index())
    assert all(case in text and WHY[case] in text for case in CASES)


def test_demo_exact_risk_equals_monte_carlo():
    from antireg.paper.demo import _fit_pair

    # weak_predictors' exact risk (β̂−β)ᵀdiag(μ)(β̂−β) + σ² against a big test set, for one ARRidgeCV fit
    k, w, n = 5, 300, 64
    mu = np.r_[np.ones(k), np.full(w, 64 / w)]
    beta = np.r_[np.full(k, 1 / np.sqrt(k)), np.zeros(w)]
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, k + w)) * np.sqrt(mu)
    y = X @ beta + 0.5 * rng.standard_normal(n)
    _, ar = _fit_pair(X, y, False, {"negative_points": 10, "positive_points": 20, "eta": 0.1})
    exact = (mu * (ar.coef_ - beta) ** 2).sum() + 0.25
    Xt = rng.standard_normal((100_000, k + w)) * np.sqrt(mu)
    err = (Xt @ beta + 0.5 * rng.standard_normal(100_000) - Xt @ ar.coef_) ** 2
    assert abs(err.mean() - exact) < 4 * err.std() / np.sqrt(err.size)
