"""The dry run's time estimate: each work item's epochs and its runs' fixed cost, from calibrations."""

from __future__ import annotations

import time

import pytest

from antireg.experiments import dryrun
from antireg.experiments.config import ExperimentCfg
from antireg.experiments.grid import make_work
from antireg.experiments.sweep import plan

CFG = {
    "experiment": "tiny_dry", "dataset": {"name": "diabetes"}, "fractions": [0.2, 1.0], "seeds": [0, 1],
    "model": {"kind": "mlp", "width": 8, "depth": 1}, "optimizers": {"sgd": {"lr": 0.05}},
    "training": {"epochs": 40}, "ar": {"lambda0": [0.01, 0.1]}, "ablations": ["none", "l2"],
}  # fmt: skip
# the fake trainer's costs in seconds: per run, per epoch of a work item, per example of an epoch
PER_RUN, PER_EPOCH, PER_EXAMPLE = 0.01, 1e-3, 2e-6


def _cost(item) -> float:
    examples = sum(s.n_train for s in item.specs)
    return len(item.specs) * PER_RUN + item.specs[0].training.epochs * (PER_EPOCH + PER_EXAMPLE * examples)


@pytest.mark.parametrize("vectorise", [True, False])
def test_estimate_models_a_runs_fixed_cost_an_epochs_overhead_and_its_examples(tmp_path, monkeypatch, vectorise):
    monkeypatch.setattr(dryrun, "train_item", lambda item, *a, **k: time.sleep(_cost(item)))
    cfg = ExperimentCfg.model_validate(CFG)
    specs = plan(cfg, None, output_dir=tmp_path)
    truth = sum(map(_cost, make_work(specs, {s.run_id for s in specs}, vectorise)))
    got = dryrun.dry_run(cfg, tmp_path, vectorise=vectorise, jobs=2)
    # the former calibration (2 epochs of the largest item, all per example) was off by several times
    assert got.estimate_s == pytest.approx(truth / 2, rel=0.15)
    assert not list(tmp_path.iterdir())  # nothing written
