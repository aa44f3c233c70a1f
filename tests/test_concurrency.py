"""Two sweeps racing on one output folder: no finished run is deleted or replaced, each
run is trained by one of them only, both finish with complete results, and the numbers
are those of one sweep alone. Real subprocesses, started together, several times."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from antireg.experiments import ExperimentCfg, run_sweep

CFG = {
    "experiment": "race", "dataset": {"name": "diabetes"}, "fractions": [0.2, 0.5, 1.0], "seeds": [0, 1, 2],
    "model": {"kind": "linear"}, "optimizers": {"sgd": {"lr": 0.05}}, "training": {"epochs": 40},
    "ar": {"lambda0": [0.01, 0.1]}, "ablations": ["none", "l2"],
}  # fmt: skip
TOTAL = 45
# (first sweep's flags, second sweep's flags, epochs): a pool against one process, two pools,
# and two vectorised sweeps (whose batches, from the whole plan, are the same in both)
TRIALS = {
    "local-vs-jobs": ([], ["--jobs", "2"], 40),
    "jobs-vs-jobs": (["--jobs", "2"], ["--jobs", "2"], 40),
    "vectorised": (["--vectorise"], ["--vectorise", "--jobs", "2"], 400),
}


def _runs(out: Path) -> pd.DataFrame:
    runs = pd.read_csv(out / "results" / "race.csv").drop(columns="wall_s")
    return runs.sort_values("run_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[int, pd.DataFrame]:
    refs = {}
    for vectorise, epochs in ((False, 40), (True, 400)):
        out = tmp_path_factory.mktemp("ref")
        run_sweep(ExperimentCfg.model_validate({**CFG, "training": {"epochs": epochs}}), out, jobs=2, progress=False,
                  vectorise=vectorise)  # fmt: skip
        refs[vectorise] = _runs(out)
    return refs


@pytest.mark.parametrize("trial", list(TRIALS))
def test_racing_sweeps_lose_nothing_and_train_each_run_once(tmp_path, references, trial):
    first, second, epochs = TRIALS[trial]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**CFG, "training": {"epochs": epochs}}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "antireg", "run", "--config", str(cfg), "--output-dir", str(out)]
    sweeps = [subprocess.Popen(cmd + flags, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for flags in (first, second)]  # fmt: skip
    # watch every run directory from its first appearance: it must never vanish or change
    inodes: dict[str, int] = {}
    problems = []
    exp = out / "experiments"
    while any(p.poll() is None for p in sweeps):
        for d in exp.iterdir() if exp.is_dir() else []:
            if d.name.startswith("."):
                continue
            try:
                inode = d.stat().st_ino
            except FileNotFoundError:
                problems.append(f"{d.name} vanished")
                continue
            if inodes.setdefault(d.name, inode) != inode:
                problems.append(f"{d.name} was replaced")
        time.sleep(0.01)
    trained = 0
    for p in sweeps:
        stdout, stderr = p.communicate()
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr
        trained += int(re.search(r"(\d+) runs trained", stdout)[1])
    assert problems == []
    assert trained == TOTAL, "every run is trained by exactly one of the two sweeps"
    assert len(inodes) == TOTAL and all((exp / rid).stat().st_ino == ino for rid, ino in inodes.items())
    assert not [p.name for p in exp.iterdir() if p.name.startswith(".")]
    # the results (written last, under a lock) come from the complete set: the numbers of one sweep alone
    pd.testing.assert_frame_equal(_runs(out), references["--vectorise" in first])
    summary = pd.read_csv(out / "results" / "race_summary.csv")
    assert summary["n_seeds"].sum() == len(summary) * 3
