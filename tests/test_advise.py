"""antireg advise: verdicts on real data, nested gain against a brute-force loop, SURE by definition, bad input."""

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

from antireg.advise import add_subcommand, advise, gain_interval, load_table, run, sure_curve, _positive_grid
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
    assert a.df_neg > a.df_pos
    assert a.supported == (a.gain_ci[0] > 0 and a.alpha_neg < 0)


def test_gain_interval_matches_brute_force():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 6)) * [1, 2, 3, 1, 1, 0.5]
    y = X @ rng.standard_normal(6) + rng.standard_normal(40)
    gain, (lo, hi), _ = gain_interval(X, y, repeats=2, seed=5)
    diff, base = np.zeros(40), np.zeros(40)
    for tr, te in RepeatedKFold(n_splits=5, n_repeats=2, random_state=5).split(X):
        sc = StandardScaler().fit(X[tr])
        Xtr, Xte = sc.transform(X[tr]), sc.transform(X[te])
        pos = RidgeCV(alphas=_positive_grid(Xtr)).fit(Xtr, y[tr])
        neg = ARRidgeCV().fit(Xtr, y[tr])
        ep, en = (y[te] - pos.predict(Xte)) ** 2, (y[te] - neg.predict(Xte)) ** 2
        diff[te] += (ep - en) / 2
        base[te] += ep / 2
    m, half = diff.mean(), stats.t.ppf(0.975, 39) * diff.std(ddof=1) / np.sqrt(40)
    np.testing.assert_allclose([gain, lo, hi], 100 * np.array([m, m - half, m + half]) / base.mean(),
                               rtol=1e-6, atol=1e-9)


def test_sure_against_definition():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    y = X @ rng.standard_normal(5) + 0.3 * rng.standard_normal(30)
    Xc = X - X.mean(0)
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    alphas = np.array([-0.5 * s.min() ** 2, 0.1, 3.0])
    got = sure_curve(s, U.T @ (y - y.mean()), y, alphas, 0.09)
    for a, g in zip(alphas, got):
        w = np.linalg.solve(Xc.T @ Xc + a * np.eye(5), Xc.T @ (y - y.mean()))
        fit = Xc @ w + y.mean()
        df = np.trace(Xc @ np.linalg.solve(Xc.T @ Xc + a * np.eye(5), Xc.T)) + 1
        assert g == pytest.approx(np.mean((y - fit) ** 2) + 2 * 0.09 * df / 30 - 0.09, rel=1e-9)


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
