"""Optional experiment tracking: every finished run of a sweep, logged to MLflow.

``antireg run --tracking mlflow`` logs each run the sweep trains: its resolved
config as params (nested keys joined with dots: ``optim.lr``), the numbers of
``metrics.json`` as metrics, the per-epoch log as metric histories (step = epoch),
and its run directory as artefacts. The store is a SQLite database ``mlflow.db`` in
the output directory, with artefacts under ``mlartifacts/``, unless a tracking URI
is given. Each MLflow run is tagged with the antireg run id, so a resumed sweep logs
only the runs not logged before. Needs ``pip install 'antireg[mlflow]'``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from antireg.experiments.config import ConfigError
from antireg.experiments.grid import RunSpec

RUN_ID_TAG = "antireg.run_id"
HISTORY = ("train_loss", "val_loss", "grad_norm")  # per-epoch columns of log.csv logged as histories
_BATCH = 1000  # MLflow's limit on metrics per log_batch call


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level, keys joined with dots."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class MlflowTracker:
    """Logs finished run directories to one MLflow experiment named after the sweep."""

    def __init__(self, experiment: str, output_dir: str | Path, uri: str | None = None) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise ConfigError("--tracking mlflow needs MLflow: pip install 'antireg[mlflow]'") from None
        output_dir = Path(output_dir).resolve()
        self.uri = uri or f"sqlite:///{output_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=(output_dir / "mlartifacts").as_uri())  # fmt: skip
        self.logged = self._logged_run_ids()

    def _logged_run_ids(self) -> set[str]:
        ids, token = set(), None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            ids |= {r.data.tags.get(RUN_ID_TAG) for r in page}
            token = page.token
            if not token:
                return ids

    def log(self, spec: RunSpec, run_dir: str | Path) -> None:
        """Log one finished run directory (once: a run id already logged is skipped)."""
        from mlflow.entities import Metric, Param

        if spec.run_id in self.logged:
            return
        run_dir = Path(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        now = int(time.time() * 1000)
        params = [Param(k, str(v)) for k, v in flatten(spec.model_dump(mode="json")).items()]
        # numbers only (bools as 0/1); an undefined metric is null in metrics.json and left out
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))]
        with (run_dir / "log.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                values += [Metric(k, float(row[k]), now, int(row["epoch"])) for k in HISTORY if row.get(k)]
        run = self.client.create_run(
            self.experiment_id, run_name=spec.run_id,
            tags={RUN_ID_TAG: spec.run_id, "antireg.condition_id": spec.condition_id, "antireg.method": spec.method},
        )  # fmt: skip
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=params)
        for start in range(0, len(values), _BATCH):
            self.client.log_batch(run_id, metrics=values[start : start + _BATCH])
        self.client.log_artifacts(run_id, str(run_dir))
        self.client.set_terminated(run_id)
        self.logged.add(spec.run_id)

