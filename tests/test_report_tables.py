"""Multiple-comparison corrections of the report's paired tests, against direct computations and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from antireg.report.tables import adjust_pvalues, table_note

pvals = st.lists(st.one_of(st.floats(0.0, 1.0), st.just(float("nan"))), min_size=1, max_size=30)


def _holm_direct(p: list[float]) -> list[float]:
    """Holm (1979) by its definition: reject H₍ᵢ₎ while p₍ⱼ₎ ≤ α/(m − j + 1) for all j ≤ i; the
    adjusted p is the smallest α at which H is rejected, i.e. maxⱼ≤ᵢ (m − j + 1) p₍ⱼ₎ capped at 1."""
    idx = [i for i, v in enumerate(p) if v == v]
    order = sorted(idx, key=lambda i: p[i])
    m = len(order)
    out = [float("nan")] * len(p)
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - j) * p[order[j]] for j in range(rank + 1)))
    return out


def _bh_direct(p: list[float]) -> list[float]:
    """Benjamini–Hochberg (1995): p̃₍ᵢ₎ = minⱼ≥ᵢ min(1, m p₍ⱼ₎ / j)."""
    idx = [i for i, v in enumerate(p) if v == v]
    order = sorted(idx, key=lambda i: p[i])
    m = len(order)
    out = [float("nan")] * len(p)
    for rank, i in enumerate(order):
        out[i] = min(min(1.0, m * p[order[j]] / (j + 1)) for j in range(rank, m))
    return out


@given(pvals)
def test_holm_matches_its_definition(p):
    np.testing.assert_allclose(adjust_pvalues(np.array(p), "holm"), _holm_direct(p), rtol=1e-12, atol=0)


@given(pvals)
def test_bh_matches_scipy_and_its_definition(p):
    got = adjust_pvalues(np.array(p), "bh")
    np.testing.assert_allclose(got, _bh_direct(p), rtol=1e-12, atol=1e-15)
    finite = [v for v in p if v == v]
    if finite:
        np.testing.assert_allclose(got[np.isfinite(got)], stats.false_discovery_control(finite, method="bh"))


def test_known_values_and_bad_correction():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="holm, bh"):
        adjust_pvalues(p, "bonferroni")


def test_note_names_the_correction():
    assert "Holm" in table_note("holm") and "Benjamini" in table_note("bh")


def test_report_writes_unadjusted_and_adjusted_p_values(tmp_path):
    from antireg.experiments.config import ExperimentCfg
    from antireg.experiments.sweep import run_sweep
    from antireg.report import write_report

    cfg = {"experiment": "tests_csv", "dataset": {"name": "diabetes"}, "fractions": [0.2, 1.0], "seeds": [0, 1, 2],
           "model": {"kind": "linear"}, "optimizers": {"sgd": {"lr": 0.05}}, "training": {"epochs": 5},
           "ar": {"lambda0": [0.01, 0.1]}, "ablations": ["none", "l2"]}
    run_sweep(ExperimentCfg.model_validate(cfg), tmp_path, progress=False)
    for correction in ("holm", "bh"):
        write_report(tmp_path / "results", tmp_path / correction, correction=correction)
        tests = pd.read_csv(tmp_path / correction / "tests_csv_tests.csv")
        assert set(tests["correction"]) == {correction}
        for _, g in tests.groupby(["metric", "optimizer"]):
            expected = (_holm_direct if correction == "holm" else _bh_direct)(g["p_value"].tolist())
            np.testing.assert_allclose(g["p_adjusted"], expected, rtol=1e-12)
        assert (tests["p_adjusted"].dropna() >= tests["p_value"].dropna() - 1e-15).all()
        note = (tmp_path / correction / "report.md").read_text()
        assert ("Holm" if correction == "holm" else "Benjamini") in note
