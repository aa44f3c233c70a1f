"""Executors (local, process pool, Ray) write identical files and resume; devices; errors."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from antireg.experiments import ConfigError, ExperimentCfg, SweepError, run_sweep
from antireg.experiments import sweep as sweep_mod
from antireg.experiments import executors
from antireg.experiments.build import resolve_device
from antireg.experiments.executors import make_executor
from antireg.experiments.grid import expand, make_work

TINY = {
    "experiment": "tiny_exec",
    "dataset": {"name": "diabetes"},
    "fractions": [0.2, 1.0],
    "seeds": [0, 1],
    "model": {"kind": "mlp", "width": 8, "depth": 1},
    "optimizers": {"sgd": {"lr": 0.05}},
    "training": {"epochs": 8, "batch_size": 64},
    "ar": {"lambda0": [0.01, 0.1]},
    "ablations": ["none", "no_trust_region"],
    # a stackable relative and one the vectorised path leaves to the sequential one
    "relatives": {"flooding": {"b": 0.1}, "gr_db": {"gamma": 0.1}},
}
CFG = ExperimentCfg.model_validate(TINY)
HAS_RAY = importlib.util.find_spec("ray") is not None


def _files(out: Path) -> dict[str, bytes]:
    """Every file of every run directory, by relative path; the wall time taken out of metrics."""
    files = {}
    for path in sorted((out / "experiments").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "metrics.json":
                metrics = json.loads(data)
                metrics.pop("wall_s")
                data = json.dumps(metrics).encode()
            files[str(path.relative_to(out))] = data
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A vectorised sweep written by the local executor, and its files. Its tasks are both
    kinds: batches of ERM/AR/flooding runs and single GR (double backprop) runs."""
    specs = expand(CFG, 442)
    assert {item.vectorised for item in make_work(specs, {s.run_id for s in specs}, vectorise=True)} == {True, False}, \
        "pick a relative that still trains alone"
    out = tmp_path_factory.mktemp("ref")
    run_sweep(CFG, out, progress=False, vectorise=True)
    return out, _files(out)


def _check_resume(reference, out: Path, **kwargs) -> None:
    """An interrupted sweep kept a few runs; the executor writes the rest, each batch retrained
    whole, and every file equals the local executor's."""
    ref_dir, ref_files = reference
    shutil.copytree(ref_dir / "experiments", out / "experiments")
    lost = sorted((out / "experiments").iterdir())
    for run_dir in lost[::7]:  # kept
        lost.remove(run_dir)
    for run_dir in lost:
        shutil.rmtree(run_dir)
    result = run_sweep(CFG, out, progress=False, vectorise=True, **kwargs)
    assert (result.n_run, result.n_skipped) == (len(lost), 28 - len(lost))
    assert _files(out) == ref_files


def test_local_resume_rewrites_the_same_files(reference, tmp_path):
    _check_resume(reference, tmp_path)


@pytest.mark.parametrize("cuda_initialised", [False, True])
def test_process_pool_writes_identical_files_and_resumes(reference, tmp_path, monkeypatch, cuda_initialised):
    # forked workers where that is safe; spawned ones once this process has initialised CUDA
    methods, real = [], executors.multiprocessing.get_context

    def get_context(method):
        methods.append(method)
        return real(method)

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: cuda_initialised)
    monkeypatch.setattr(executors.multiprocessing, "get_context", get_context)
    _check_resume(reference, tmp_path, jobs=2)
    assert methods == ["spawn" if cuda_initialised or sys.platform != "linux" else "fork"]


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'antireg[ray]')")
def test_ray_local_instance_writes_identical_files_and_resumes(reference, tmp_path):
    import ray

    # a local instance limited to 2 CPUs, started by the sweep
    _check_resume(reference, tmp_path, executor="ray", jobs=2)
    assert not ray.is_initialized()  # and stopped by it


def test_a_failing_work_item_fails_only_its_runs(tmp_path, monkeypatch):
    def broken(item, *args, **kwargs):
        if any(s.ablation == "no_trust_region" for s in item.specs):
            raise RuntimeError("out of memory")
        return real(item, *args, **kwargs)

    real = sweep_mod.train_item
    monkeypatch.setattr(sweep_mod, "train_item", broken)
    with pytest.raises(SweepError, match="out of memory") as err:
        run_sweep(CFG, tmp_path, progress=False, vectorise=False)  # one item per run
    assert "8 of 28 runs failed" in str(err.value)  # the no_trust_region runs: 2 λ₀ × 2 seeds × 2 fractions
    assert len(list((tmp_path / "experiments").iterdir())) == 20  # the others finished


def test_executor_and_device_errors():
    with pytest.raises(ConfigError, match="--ray-address needs --executor ray"):
        make_executor("process", 2, ray_address="ray://head:10001")
    with pytest.raises(ConfigError, match="executor must be one of"):
        make_executor("dask")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        ExperimentCfg.model_validate({**TINY, "device": "tpu"})
    if not HAS_RAY:
        with pytest.raises(ConfigError, match=r"antireg\[ray\]"):
            make_executor("ray")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cli_device_cuda_without_a_gpu_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "antireg", "run", "--config", "diabetes_reg", "--device", "cuda",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "experiments").exists()

