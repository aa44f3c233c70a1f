"""antireg advise: verdicts on real data, nested gain against a brute-force loop, selectors and plug-ins
against independent oracles (sklearn, numpy SVD, brute-force refits), bad input."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import RepeatedKFold
from sklearn.preprocessing import StandardScaler

from sklearn.model_selection import KFold

from antireg.advise import add_subcommand, advise, gain_interval, load_table, noise_variance, run
from antireg.linear import ARRidgeCV

DATA_DIR = Path(os.environ.get("ANTIREG_DATA_DIR", "/work/shared/data"))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers(dest="command"))
    return parser.parse_args(["advise", *argv])


def kobak_csv(path: Path, n: int = 64, p: int = 1000, seed: int = 0) -> Path:
    """Kobak et al. (2020) toy: Sigma = I + 0.1 11^T, beta ∝ 1, SNR 10, noise variance 1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + np.sqrt(0.1) * rng.standard_normal((n, 1))
    beta = np.ones(p) * np.sqrt(10 / (p + 0.1 * p**2))  # beta' Sigma beta = 10
    y = X @ beta + rng.standard_normal(n)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])
    frame["y"] = y
    frame.to_csv(path, index=False)
    return path


def weak_predictors(n: int = 128, weak: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The demo's weak_predictors design (antireg.paper.demo; Kobak et al. 2020, Sec. 5): 5 strong
    directions (variance 1, beta = 1/sqrt 5, sigma = 0.5) beside `weak` pure-noise predictors of total
    variance n, an implicit ridge of about n that a negative alpha cancels."""
    rng = np.random.default_rng(seed)
    sd = np.r_[np.ones(5), np.full(weak, np.sqrt(n / weak))]
    X = rng.standard_normal((n, sd.size)) * sd
    return X, X[:, :5].sum(axis=1) / np.sqrt(5) + 0.5 * rng.standard_normal(n)


@pytest.mark.parametrize("name", ["diabetes", "concrete", "airfoil"])
def test_raw_targets_not_supported(name):
    if name != "diabetes" and not (DATA_DIR / name).exists():
        pytest.skip(f"{name} files not under {DATA_DIR}")
    X, y, _ = load_table(name, None, str(DATA_DIR))
    a = advise(X, y, repeats=1)
    assert not a.supported
    assert "not supported" in a.lines()[-1]


def test_kobak_regime_verdict_follows_rule(tmp_path):
    X, y, _ = load_table(str(kobak_csv(tmp_path / "k.csv")), "y")
    a = advise(X, y, repeats=2)
    assert a.alpha_neg < 0  # Kobak: the LOO optimum at p >> n is negative
    assert a.alpha_neg > a.alpha_bound
    assert a.loo.df > a.positive.df
    assert a.supported == (a.gain_ci[0] > 0 and a.alpha_neg < 0)


def test_weak_predictors_supported():
    """Where the evidence is real (demo table: gain 20.6% [19.1, 22.1] over 50 draws), the advisor says
    so from one sample, on the features' own scales (standardising would erase the weak predictors)."""
    X, y = weak_predictors()
    a = advise(X, y, repeats=1, standardize=False)
    assert a.supported and a.gain_ci[0] > 0 and a.alpha_neg < 0
    assert "features kept on their own scales" in a.lines()[0]
    assert a.lines()[-1].startswith("verdict: negative regularization is supported")


def test_selectors_and_plug_ins_match_oracles():
    """Each printed number equals an independent computation: the library estimators refitted
    directly, SURE by its definition with brute-force refits, the plug-ins from a numpy SVD."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5)) * [3, 2, 1, 0.5, 0.2]
    y = X @ rng.standard_normal(5) + 0.3 * rng.standard_normal(30)
    a = advise(X, y, repeats=1, standardize=False)
    ar = ARRidgeCV().fit(X, y)
    assert a.loo.alpha == ar.alpha_
    assert a.positive.alpha == RidgeCV(alphas=ar.alphas_[ar.alphas_ > 0]).fit(X, y).alpha_
    assert a.kfold.alpha == ARRidgeCV(cv=KFold(5, shuffle=True, random_state=0)).fit(X, y).alpha_
    Xc, yc = X - X.mean(0), y - y.mean()
    ols = np.linalg.lstsq(np.c_[np.ones(30), X], y, rcond=None)[0]
    s2 = np.sum((y - np.c_[np.ones(30), X] @ ols) ** 2) / (30 - 5 - 1)
    assert a.sigma2 == pytest.approx(s2, rel=1e-10)

    def sure(alpha):  # definition, by a direct solve per alpha; +1 df for the intercept
        H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(5), Xc.T)
        return np.mean((yc - H @ yc) ** 2) + 2 * s2 * (np.trace(H) + 1) / 30 - s2

    brute = np.array([sure(al) for al in ar.alphas_])
    np.testing.assert_allclose(a.curve["sure"], brute, rtol=1e-8, atol=1e-12)
    assert a.sure.alpha == ar.alphas_[np.argmin(brute)]
    # plug-ins at tau0 = positive optimum / n: mu = s^2/n, beta = V^T beta_OLS
    U, sv, Vt = np.linalg.svd(Xc, full_matrices=False)
    mu, beta, tau0 = sv**2 / 30, Vt @ ols[1:], a.positive.alpha / 30
    dR = np.sum(2 * mu**2 / (mu + tau0) ** 3 * (tau0 * beta**2 - s2 / 30))
    assert a.sign_switch == pytest.approx(dR, rel=1e-8)
    weak = mu <= 0.2
    assert a.weak_share == pytest.approx(np.sum(beta[weak] ** 2) / np.sum(beta**2), rel=1e-8)
    np.testing.assert_allclose(a.curve["loo"], ARRidgeCV(store_cv_results=True).fit(X, y).cv_results_.mean(0))
    assert "lambda = " + f"{a.loo.alpha / 30:.4g}" in a.lines()[3]


def test_noise_variance_when_ols_interpolates():
    """p > n: sigma^2 is the positive optimum's LOO error, against a brute-force leave-one-out refit."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 40))
    y = X[:, 0] + 0.5 * rng.standard_normal(20)
    pos = RidgeCV(alphas=[0.5, 5.0, 50.0]).fit(X, y)
    got, source = noise_variance(X, y, pos)
    errors = [y[i] - Ridge(alpha=pos.alpha_).fit(np.delete(X, i, 0), np.delete(y, i)).predict(X[i:i + 1])[0]
              for i in range(20)]
    assert got == pytest.approx(np.mean(np.square(errors)), rel=1e-8)
    assert "OLS interpolates" in source


def test_gain_interval_matches_brute_force():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 6)) * [1, 2, 3, 1, 1, 0.5]
    y = X @ rng.standard_normal(6) + rng.standard_normal(40)
    gain, (lo, hi), _ = gain_interval(X, y, repeats=2, seed=5)
    diff, base = np.zeros(40), np.zeros(40)
    for tr, te in RepeatedKFold(n_splits=5, n_repeats=2, random_state=5).split(X):
        sc = StandardScaler().fit(X[tr])
        Xtr, Xte = sc.transform(X[tr]), sc.transform(X[te])
        neg = ARRidgeCV().fit(Xtr, y[tr])
        pos = RidgeCV(alphas=neg.alphas_[neg.alphas_ > 0]).fit(Xtr, y[tr])
        ep, en = (y[te] - pos.predict(Xte)) ** 2, (y[te] - neg.predict(Xte)) ** 2
        diff[te] += (ep - en) / 2
        base[te] += ep / 2
    m, half = diff.mean(), stats.t.ppf(0.975, 39) * diff.std(ddof=1) / np.sqrt(40)
    np.testing.assert_allclose([gain, lo, hi], 100 * np.array([m, m - half, m + half]) / base.mean(),
                               rtol=1e-6, atol=1e-9)


def test_cli_prints_and_writes_report(tmp_path, capsys):
    assert run(_args("diabetes", "--repeats", "1", "--report", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "lambda = alpha / n" in out and "verdict:" in out
    page = (tmp_path / "advise.html").read_text()
    assert "data:image/png;base64" in page and (tmp_path / "criterion.svg").exists()


def _bad_files(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [2.0, 1, 0, 5], "c": ["u", "v", "u", "v"], "y": [1.0, 2, 3, 5]})
    good.to_csv(tmp / "good.csv", index=False)
    nan = good.copy()
    nan.loc[2, "b"] = np.nan
    nan.to_csv(tmp / "nan.csv", index=False)
    good.head(2).to_csv(tmp / "two.csv", index=False)
    (tmp / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp / "bad.parquet").write_bytes(b"not parquet at all")
    return {
        "missing column": ([str(tmp / "good.csv"), "--target", "zz"], "available columns: a, b, c, y"),
        "non-numeric target": ([str(tmp / "good.csv"), "--target", "c"], "not numeric"),
        "NaN": ([str(tmp / "nan.csv"), "--target", "y"], "1 missing value(s) (NaN) by column: b: 1; first in row 2"),
        "few rows": ([str(tmp / "two.csv"), "--target", "y"], "has 2 row(s)"),
        "not a table": ([str(tmp / "blob.bin"), "--target", "y"], "not a table"),
        "bad parquet": ([str(tmp / "bad.parquet"), "--target", "y"], "parquet"),
        "no such data": (["nosuch", "--target", "y"], "neither a file nor a registered data set"),
    }


def test_bad_input_exit_2_one_line(tmp_path):
    for case, (argv, needle) in _bad_files(tmp_path).items():
        proc = subprocess.run([sys.executable, "-m", "antireg.advise", *argv], capture_output=True, text=True)
        assert proc.returncode == 2, (case, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, case
        assert needle.lower() in proc.stderr.lower(), (case, proc.stderr)
