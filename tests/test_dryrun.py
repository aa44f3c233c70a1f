"""The dry run's time estimate: an epoch's cost and a run's fixed cost, from two calibrations."""

from __future__ import annotations

import time

import pytest

from antireg.experiments import dryrun
from antireg.experiments.config import ExperimentCfg
from antireg.experiments.grid import run_units
from antireg.experiments.sweep import plan

CFG = {
    "experiment": "tiny_dry", "dataset": {"name": "diabetes"}, "fractions": [0.2, 1.0], "seeds": [0, 1],
    "model": {"kind": "mlp", "width": 8, "depth": 1}, "optimizers": {"sgd": {"lr": 0.05}},
    "training": {"epochs": 50}, "ar": {"lambda0": [0.01, 0.1]}, "ablations": ["none", "l2"],
}  # fmt: skip
PER_RUN, PER_UNIT = 0.02, 2e-5  # seconds: the fake trainer's fixed cost per run and per example × epoch


@pytest.mark.parametrize("vectorise", [True, False])
def test_estimate_separates_a_runs_fixed_cost_from_its_epochs(tmp_path, monkeypatch, vectorise):
    def fake_train(item, *args, **kwargs):  # costs exactly PER_RUN per run plus PER_UNIT per unit
        time.sleep(len(item.specs) * PER_RUN + PER_UNIT * sum(map(run_units, item.specs)))

    monkeypatch.setattr(dryrun, "train_item", fake_train)
    cfg = ExperimentCfg.model_validate(CFG)
    specs = plan(cfg, None, output_dir=tmp_path)
    truth = len(specs) * PER_RUN + PER_UNIT * sum(map(run_units, specs))
    got = dryrun.dry_run(cfg, tmp_path, vectorise=vectorise, jobs=2)
    assert got.todo_runs == len(specs)
    # an estimate from the epochs alone (the former calibration) would be off by PER_RUN's share
    assert got.estimate_s == pytest.approx(truth / 2, rel=0.15)
    assert got.seconds_per_run == pytest.approx(PER_RUN, rel=0.3)
