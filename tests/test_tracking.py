"""MLflow tracking against a real local SQLite store: runs, params, metrics, histories and
artefacts read back; resume logs nothing twice."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from antireg.cli import main
from antireg.tracking import RUN_ID_TAG, flatten

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'antireg[mlflow]')")

TINY = {
    "experiment": "tiny_tracked",
    "dataset": {"name": "diabetes"},
    "fractions": [0.5],
    "seeds": [0],
    "model": {"kind": "linear"},
    "optimizers": {"sgd": {"lr": 0.05}},
    "training": {"epochs": 6},
    "ar": {"lambda0": [0.01, 0.1]},
    "ablations": ["none"],
}


def test_flatten_joins_nested_keys():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": {}}) == {"a": 1, "b.c": 2, "b.d.e": 3, "f": {}}


def test_mlflow_logs_every_run_and_reads_back(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    args = ["run", "--config", str(cfg), "--output-dir", str(tmp_path), "--quiet", "--tracking", "mlflow"]
    assert main(args) == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny_tracked")
    runs = client.search_runs([experiment.experiment_id])
    table = pd.read_csv(tmp_path / "results" / "tiny_tracked.csv")
    assert sorted(r.data.tags[RUN_ID_TAG] for r in runs) == sorted(table["run_id"])
    for run in runs:
        run_dir = tmp_path / "experiments" / run.data.tags[RUN_ID_TAG]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        assert run.info.status == "FINISHED"
        assert run.data.params["optim.lr"] == "0.05" and run.data.params["method"] == config["method"]
        assert run.data.metrics["test_rmse"] == pytest.approx(metrics["test_rmse"])
        assert run.data.metrics["r_proj"] == pytest.approx(metrics["r_proj"])
        history = client.get_metric_history(run.info.run_id, "val_loss")
        log = pd.read_csv(run_dir / "log.csv")
        assert [m.step for m in history] == list(log["epoch"])
        assert [m.value for m in history] == pytest.approx(list(log["val_loss"]))
        artefacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "config.json", "log.csv", "outputs_test.npy"} <= artefacts
        assert Path(tmp_path / "mlartifacts").is_dir()
    # a resumed sweep with one lost run logs that run alone: no duplicates
    lost = tmp_path / "experiments" / table["run_id"].iloc[0]
    for path in lost.iterdir():
        path.unlink()
    lost.rmdir()
    assert main(args) == 0
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)
