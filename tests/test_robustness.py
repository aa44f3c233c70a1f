"""Faults and bad input: a killed sweep resumes losing nothing; fuzzed configs never crash."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antireg.experiments import ConfigError, expand, load_config

SWEEP = {
    "experiment": "killme",
    "dataset": {"name": "diabetes"},
    "fractions": [0.2, 0.5],
    "seeds": [0, 1, 2],
    "model": {"kind": "mlp", "width": 16, "depth": 1},
    "optimizers": {"adam": {"lr": 0.01}},
    "training": {"epochs": 40},
    "ar": {"lambda0": [0.01, 0.1]},
    "ablations": ["none", "l2"],
}


def _antireg(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "antireg", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(out: Path) -> list[Path]:
    exp = out / "experiments"
    return [d for d in exp.iterdir() if not d.name.startswith(".")] if exp.exists() else []


def test_sigkill_mid_sweep_then_resume_loses_and_duplicates_nothing(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP))
    total = len(expand(load_config(str(cfg)), 442))
    out = tmp_path / "out"
    proc = _antireg("run", "--config", str(cfg), "--output-dir", str(out), "--quiet", cwd=tmp_path)
    deadline = time.time() + 120
    while len(_finished(out)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(_finished(out))
    assert 0 < killed_at < total, "the kill must land mid-sweep"
    # every directory named after a run is complete: nothing half-written is visible
    for d in _finished(out):
        json.loads((d / "metrics.json").read_text())
        assert (d / "config.json").is_file() and (d / "log.csv").is_file()
    assert not list((out / "results").glob("*.csv"))

    again = _antireg("run", "--config", str(cfg), "--output-dir", str(out), "--quiet", cwd=tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    runs = pd.read_csv(out / "results" / "killme.csv")
    assert len(runs) == total and runs["run_id"].is_unique
    assert len(_finished(out)) == total
    assert not list((out / "experiments").glob(".tmp-*")), "a folder the kill left half-written is cleaned up"

    # and the numbers equal an uninterrupted sweep's, bit for bit
    clean = tmp_path / "clean"
    ref = _antireg("run", "--config", str(cfg), "--output-dir", str(clean), "--quiet", cwd=tmp_path)
    ref.communicate(timeout=300)
    a = runs.drop(columns="wall_s").sort_values("run_id").reset_index(drop=True)
    b = pd.read_csv(clean / "results" / "killme.csv").drop(columns="wall_s").sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_corrupt_run_directory_is_reported_and_rerun(tmp_path, capsys):
    from antireg.experiments import ExperimentCfg, run_sweep

    cfg = ExperimentCfg.model_validate({**SWEEP, "seeds": [0], "fractions": [0.2], "ablations": ["none"]})
    first = run_sweep(cfg, tmp_path, progress=False)
    victim = _finished(tmp_path)[0]
    (victim / "metrics.json").write_text('{"test_rmse": 1.')  # truncated by a crash or a full disk
    again = run_sweep(cfg, tmp_path, progress=False)
    assert again.n_run == 1
    assert "re-running" in capsys.readouterr().err
    assert len(again.runs) == len(first.runs)
    json.loads((victim / "metrics.json").read_text())


# -- fuzzing the config schema ------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=8), st.lists(st.floats(-2, 2), max_size=3))
VALID = yaml.safe_load(json.dumps({**SWEEP, "relatives": {"sam": {"rho": [0.05]}}}))


def _mutations():
    keys = ["experiment", "dataset", "fractions", "seeds", "model", "optimizers", "training", "ar", "ablations",
            "safeguards", "split", "relatives", "evaluation", "add_baseline_zero", "unknown_key", "fractons"]
    nested = st.dictionaries(st.sampled_from(["name", "lr", "kind", "width", "epochs", "lambda0", "rho",
                                              "grad_clip", "val_frac", "sam", "adam", "bogus"]),
                             scalars, max_size=3)
    return st.dictionaries(st.sampled_from(keys), st.one_of(scalars, nested), min_size=1, max_size=4)


@given(changes=_mutations())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_configs_validate_or_fail_with_config_error(tmp_path, changes):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({**VALID, **changes}))
    try:
        cfg = load_config(str(path))
        expand(cfg, 442)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)


@given(text=st.text(max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_text_as_config_never_crashes(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(str(path))


@pytest.mark.parametrize("text, fragment", [
    ("experiment: x\ndataset: {name: diabetes}\nfractions: [0.5]\nseeds: [0]\noptimizers: {adam: {lr: 0.1}}\nsafegaurds: {}\n",
     "did you mean 'safeguards'"),
    ("experiment: [unclosed", "not valid YAML"),
    ("experiment: x\ndataset: {name: nosuch}\nfractions: [0.5]\nseeds: [0]\noptimizers: {adam: {lr: 0.1}}\n",
     "unknown data set 'nosuch'"),
])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = _antireg("run", "--config", str(path), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and fragment in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
