"""v4 Exp 2 and Exp 3 tables recomputed independently with plain numpy; Exp 1 and Exp 4 sanity."""

import numpy as np
import pytest

from antireg.paper.config import PaperCfg, validate
from antireg.paper.driver import run_paper

MU = np.array([4.0, 3.0, 2.2, 1.5, 1.0, 0.7, 0.45, 0.28, 0.18, 0.11, 0.07, 0.04])
PAT = {
    "weak": [0.08, 0.08, 0.06, 0.05, 0.05, 0.04, 0.10, 0.16, 0.28, 0.36, 0.44, 0.52],
    "balanced": [0.18, 0.16, 0.15, 0.13, 0.12, 0.11, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10],
    "strong": [0.52, 0.44, 0.36, 0.28, 0.18, 0.12, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02],
}


def _run(kind, tmp_path, **kw):
    return run_paper(validate(PaperCfg(paper=kind, **kw)), tmp_path, progress=False).tables[kind]


def test_exp2_independent(tmp_path):
    t = _run("v4_exp2", tmp_path).set_index("alignment")
    for name, b in PAT.items():
        b = np.array(b)
        W = MU <= 0.2
        lam = -0.02
        A_W, A_S = sum(b[W] ** 2), sum(b[~W] ** 2)
        bias = [m * lam * lam * bj * bj / (m + lam) ** 2 for m, bj in zip(MU, b)]
        B_W = sum(x for x, w in zip(bias, W) if w)
        B_S = sum(x for x, w in zip(bias, W) if not w)
        row = t.loc[name]
        assert row.rho_W == pytest.approx(A_W / (A_W + A_S))
        assert row.M_W == pytest.approx(float(MU[W] @ b[W] ** 2))
        assert row.M_S == pytest.approx(float(MU[~W] @ b[~W] ** 2))
        assert row.B_W == pytest.approx(B_W) and row.B_S == pytest.approx(B_S)
        assert row.weak_bias_share == pytest.approx(B_W / (B_W + B_S))


def test_exp3_independent(tmp_path):
    t = _run("v4_exp3", tmp_path)
    assert len(t) == 6
    n = 48
    for row in t.itertuples():
        b, t0, s2 = np.array(PAT[row.alignment]), row.tau0, row.noise_std**2
        risk = lambda eta: sum(m * eta**2 * bj**2 / (m + eta) ** 2 + s2 / n * m**2 / (m + eta) ** 2
                               for m, bj in zip(MU, b))
        h = 1e-6
        assert row.dR_da_at_0 == pytest.approx((risk(t0 + h) - risk(t0 - h)) / (2 * h), rel=1e-5)
        grid = np.linspace(-t0 + 0.001, 1, 401)
        a_opt = grid[int(np.argmin([risk(t0 + a) for a in grid]))]
        assert row.oracle_adjustment == pytest.approx(a_opt)
        assert row.negative_predicted == (row.dR_da_at_0 > 0)
        assert row.oracle_sign == ("negative" if a_opt < 0 else "positive")


def test_exp1_df_exceeds_p_when_negative(tmp_path):
    t = _run("v4_exp1", tmp_path, seed=3)
    assert (t.margin > 0).all()
    assert (t.loc[t["lambda"] < 0, "df"] > 12).all() and (t.loc[t["lambda"] > 0, "df"] < 12).all()
    assert t["df"].is_monotonic_decreasing and t.scale.eq("per_sample").all()


def test_exp4_tiny(tmp_path):
    opts = {"scenarios": [{"alignment": "weak", "noise_std": 0.15, "tau0": 0.2}], "n_test": 100,
            "full_points": 9, "positive_points": 5, "chunk": 2}
    t = _run("v4_exp4", tmp_path, replications=3, options=opts)
    assert list(t.selector) == ["sure_true_sigma", "sure_estimated_sigma", "loo"]
    assert (t.replications == 3).all()
    st = t[t.selector == "sure_true_sigma"].iloc[0]
    assert st.oracle_test_mse <= st.negative_capable_test_mse + 1e-12  # same grid: the oracle is a lower bound


# ------------------------------------------------------------------ figures: the plotted data read back

def _by_gid(ax, gid):
    return [a for a in (*ax.lines, *ax.patches) if a.get_gid() == gid]


def _x_range(patch):
    """Data x-extent of an axvspan (its x is in data coordinates, its y in axes coordinates)."""
    xs = patch.get_path().transformed(patch.get_patch_transform()).vertices[:, 0]
    return xs.min(), xs.max()


def test_exp1_figure_marks_the_curve_argmin_and_shades_below_minus_mu_hat_min(tmp_path):
    from antireg.paper import EXPERIMENTS

    res = run_paper(validate(PaperCfg(paper="v4_exp1", seed=3, options={"curve_points": 15})), tmp_path,
                    progress=False)
    pts, curve = res.tables["v4_exp1"], res.tables["v4_exp1_curve"]
    assert list(pts.columns) == ["lambda", "scale", "margin", "df", "beta_norm", "train_mse", "test_mse", "mu_hat_min"]
    assert len(pts) == 7 and len(curve) == 30 and list(curve.columns) == list(pts.columns)
    bound = -pts.mu_hat_min.iloc[0]
    assert curve["lambda"].min() > bound and (curve.margin > 0).all() and curve.df.is_monotonic_decreasing
    fig = EXPERIMENTS["v4_exp1"].figure(pts, curve)
    ax, bx = fig.axes
    (opt,) = _by_gid(ax, "optimum")
    assert opt.get_xdata()[0] == curve["lambda"][curve.test_mse.idxmin()]
    assert opt.get_ydata()[0] == pytest.approx(curve.test_mse.min())
    for a in (ax, bx):
        (span,) = _by_gid(a, "infeasible")
        assert _x_range(span) == pytest.approx((2 * bound, bound)) and a.get_xlim()[0] == pytest.approx(2 * bound)
        assert a.get_xscale() == "symlog" and "per-sample" in a.get_xlabel()
    test_line = next(ln for ln in ax.lines if ln.get_label() == "test MSE")
    np.testing.assert_array_equal(test_line.get_ydata(), curve.test_mse)
    (png, svg, caption), = EXPERIMENTS["v4_exp1"].figures(res.tables, tmp_path)
    assert png.stat().st_size > 10_000 and svg.is_file() and "per-sample" in caption


def test_exp2_figure_bias_terms_sum_to_B_and_bars_are_the_shares(tmp_path):
    from antireg.paper import EXPERIMENTS

    res = run_paper(validate(PaperCfg(paper="v4_exp2")), tmp_path, progress=False)
    stats, dirs = res.tables["v4_exp2"].set_index("alignment"), res.tables["v4_exp2_directions"]
    assert len(dirs) == 3 * 12 and "weak_bias_share" in stats
    for a, g in dirs.groupby("alignment"):
        assert g.bias_term[g.weak].sum() == pytest.approx(stats.loc[a, "B_W"])
        assert g.bias_term[~g.weak].sum() == pytest.approx(stats.loc[a, "B_S"])
        np.testing.assert_array_equal(g.mu, MU)
        np.testing.assert_array_equal(g.beta, PAT[a])
    fig = EXPERIMENTS["v4_exp2"].figure(res.tables["v4_exp2"], dirs)
    ax, bx = fig.axes
    assert [ln.get_label() for ln in ax.lines] == list(PAT)
    (weak,) = _by_gid(ax, "weak")
    assert _x_range(weak)[1] == pytest.approx(0.2)  # κ
    a_share, m_share, b_share = ([r.get_height() for r in c] for c in bx.containers)
    np.testing.assert_allclose(b_share, stats.weak_bias_share)
    np.testing.assert_allclose(a_share, stats.rho_W)
    np.testing.assert_allclose(m_share, stats.M_W / (stats.M_W + stats.M_S))


def test_exp3_figure_dots_at_the_oracle_and_shading_at_minus_min_mu(tmp_path):
    from antireg.paper import EXPERIMENTS

    t = _run("v4_exp3", tmp_path, options={"grid_points": 51})
    assert (t.n_train == 48).all()
    fig = EXPERIMENTS["v4_exp3"].figure(t)
    (ax,) = fig.axes
    dots = _by_gid(ax, "optimum")
    assert len(dots) == 6 and len(ax.get_legend().get_texts()) == 7
    for dot, row in zip(dots, t.itertuples()):
        lam = row.tau0 + row.oracle_adjustment
        assert dot.get_xdata()[0] == pytest.approx(lam)
        b = np.array(PAT[row.alignment])
        risk = sum(m * lam**2 * bj**2 / (m + lam) ** 2 + row.noise_std**2 / 48 * m**2 / (m + lam) ** 2
                   for m, bj in zip(MU, b))
        assert dot.get_ydata()[0] == pytest.approx(risk, rel=1e-6)
    (span,) = _by_gid(ax, "infeasible")
    assert _x_range(span) == pytest.approx((-0.1, -0.04))


def test_exp4_figure_shows_each_selector_and_the_paired_difference(tmp_path):
    from antireg.paper import EXPERIMENTS

    opts = {"scenarios": [{"alignment": "weak", "noise_std": 0.15, "tau0": 0.2},
                          {"alignment": "strong", "noise_std": 0.5, "tau0": 0.1}],
            "n_test": 100, "full_points": 9, "positive_points": 5, "chunk": 3}
    t = _run("v4_exp4", tmp_path, replications=3, options=opts)
    assert {"positive_only_test_mse_ci95", "negative_capable_test_mse_ci95", "oracle_test_mse_ci95"} <= set(t)
    assert (t.positive_only_test_mse_ci95 > 0).all()
    fig = EXPERIMENTS["v4_exp4"].figure(t)
    assert len(fig.axes) == 3  # one panel per scenario + the paired differences
    for ax, (_, g) in zip(fig.axes[:2], t.groupby(["alignment", "noise_std", "tau0"], sort=False)):
        pos, neg = (np.asarray(c.lines[0].get_ydata(), float) for c in ax.containers)
        np.testing.assert_allclose(pos, g.positive_only_test_mse)
        np.testing.assert_allclose(neg, g.negative_capable_test_mse)
    diff = fig.axes[2]
    for c, sel in zip(diff.containers, ["sure_true_sigma", "sure_estimated_sigma", "loo"]):
        np.testing.assert_allclose(np.asarray(c.lines[0].get_ydata(), float),
                                   t[t.selector == sel].diff_negative_minus_positive)
    (png, _, _), = EXPERIMENTS["v4_exp4"].figures({"v4_exp4": t}, tmp_path)
    assert png.stat().st_size > 10_000
