"""Optional experiment tracking: every finished run of a sweep, logged to MLflow.

``antireg run --tracking mlflow`` logs each run the sweep trains: its resolved
config as params (nested keys joined with dots: ``optim.lr``), the numbers of
``metrics.json`` as metrics, the per-epoch log as metric histories (step = epoch),
and its run directory as artefacts. The store is a SQLite database ``mlflow.db`` in
the output directory, with artefacts under ``mlartifacts/``, unless a tracking URI
is given. Each MLflow run is tagged with the antireg run id, so a resumed sweep logs
only the runs not logged before. Needs ``pip install 'antireg[mlflow]'``.

A sink: the sweep reads each finished run (:func:`antireg.experiments.storage.read_run`)
and hands it over, so this module knows nothing of run specs or file names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from antireg.errors import ConfigError

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

    def log(self, run_dir: str | Path, config: dict, metrics: dict, history: list[dict]) -> None:
        """Log one finished run (once: a run id already logged is skipped): its ``config``
        (the resolved spec with ``run_id`` and ``condition_id``), ``metrics``, per-epoch
        ``history`` and the files of ``run_dir`` as artefacts."""
        from mlflow.entities import Metric, Param

        run_id = config["run_id"]
        if run_id in self.logged:
            return
        now = int(time.time() * 1000)
        spec = {k: v for k, v in config.items() if k not in ("run_id", "condition_id")}
        params = [Param(k, str(v)) for k, v in flatten(spec).items()]
        # numbers only (bools as 0/1); an undefined metric is null in metrics.json and left out
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))]
        for row in history:
            values += [Metric(k, float(row[k]), now, int(row["epoch"])) for k in HISTORY if row.get(k) not in (None, "")]
        run = self.client.create_run(
            self.experiment_id, run_name=run_id,
            tags={RUN_ID_TAG: run_id, "antireg.condition_id": config["condition_id"], "antireg.method": config["method"]},
        )  # fmt: skip
        mlflow_id = run.info.run_id
        self.client.log_batch(mlflow_id, params=params)
        for start in range(0, len(values), _BATCH):
            self.client.log_batch(mlflow_id, metrics=values[start : start + _BATCH])
        self.client.log_artifacts(mlflow_id, str(run_dir))
        self.client.set_terminated(mlflow_id)
        self.logged.add(run_id)
