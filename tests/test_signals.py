"""Interrupts: Ctrl-C (SIGINT to the process group) and SIGTERM (to the driver) stop a
sweep within seconds, exit 130 / 143 with a message that says how to resume, leave no
process of the driver's session and no temporary file, and the resumed sweep gives the
numbers of an uninterrupted one. Real subprocesses: the signals are the real ones."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from antireg.experiments import ExperimentCfg, run_sweep

# --jobs 2 trains one run per task; --vectorise --jobs 2 three batches of 15 runs, which
# need more epochs to last long enough to be interrupted
BASE = {
    "experiment": "sig", "dataset": {"name": "diabetes"}, "fractions": [0.2, 0.5, 1.0], "seeds": [0, 1, 2],
    "model": {"kind": "mlp", "width": 32, "depth": 1}, "optimizers": {"sgd": {"lr": 0.05}},
    "ar": {"lambda0": [0.01, 0.1]}, "ablations": ["none", "l2"],
}  # fmt: skip
MODES = {"jobs": (["--no-vectorise", "--jobs", "2"], 40), "vectorise": (["--jobs", "2"], 600)}  # vectorised: the default
STOP_WITHIN_S = 10.0  # generous: CI shares two cores; here it takes about 1.5 s


def _cfg(mode: str) -> dict:
    return {**BASE, "training": {"epochs": MODES[mode][1]}}


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """Uninterrupted sweeps, in this process (the pool gives the local executor's numbers)."""
    refs = {}
    for mode in MODES:
        out = tmp_path_factory.mktemp(f"ref_{mode}")
        run_sweep(ExperimentCfg.model_validate(_cfg(mode)), out, jobs=2, progress=False, vectorise=mode == "vectorise")
        refs[mode] = _runs(out)
    return refs


def _runs(out: Path) -> pd.DataFrame:
    runs = pd.read_csv(out / "results" / "sig.csv").drop(columns="wall_s")
    return runs.sort_values("run_id").reset_index(drop=True)


def session_members(sid: int) -> list[str]:
    """Processes (pid and command) whose session id is ``sid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == sid:
            found.append(f"{stat.parent.name} {text[: text.rindex(')') + 1]} state {fields[0]}")
    return found


def _interrupt(tmp_path: Path, mode: str, signum: int, times: int = 1) -> tuple[subprocess.CompletedProcess, float, Path]:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_cfg(mode)))
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "antireg", "run", "--config", str(cfg), "--output-dir", str(out), "--quiet",
         *MODES[mode][0]],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    exp = out / "experiments"
    deadline = time.time() + 120
    while not (exp.is_dir() and any(exp.glob(".lock-*"))) and driver.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # until a worker has claimed a run and is training it
    time.sleep(0.3)
    assert driver.poll() is None, "the sweep must still be running when the signal comes"
    start = time.time()
    for _ in range(times):
        if signum == signal.SIGINT:
            os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        else:
            os.kill(driver.pid, signal.SIGTERM)  # kill PID: the driver alone
        time.sleep(0.1)
    stdout, stderr = driver.communicate(timeout=60)  # returns only once every holder of the pipes is gone
    elapsed = time.time() - start
    time.sleep(0.2)
    assert session_members(driver.pid) == [], "a process of the sweep's session survived it"
    return subprocess.CompletedProcess(driver.args, driver.returncode, stdout, stderr), elapsed, out


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_sweep_cleanly_and_resume_is_identical(tmp_path, references, mode, signum):
    # Ctrl-C three times over (an impatient user): the later ones change nothing
    proc, elapsed, out = _interrupt(tmp_path, mode, signum, times=3 if signum == signal.SIGINT else 1)
    assert proc.returncode == 128 + signum, proc.stderr
    assert elapsed < STOP_WITHIN_S
    assert "Traceback" not in proc.stderr and proc.stderr.count("antireg: ") == 1, proc.stderr
    assert "run the same command again to resume" in proc.stderr and " of 45 runs of sig are finished" in proc.stderr
    exp = out / "experiments"
    assert not [p.name for p in exp.iterdir() if p.name.startswith(".")], "temporary files or locks left behind"
    assert not list((out / "results").iterdir())
    finished = list(exp.iterdir())
    assert len(finished) < 45

    result = run_sweep(ExperimentCfg.model_validate(_cfg(mode)), out, jobs=2, progress=False,
                       vectorise=mode == "vectorise")
    assert result.n_skipped == len(finished)
    pd.testing.assert_frame_equal(_runs(out), references[mode])
