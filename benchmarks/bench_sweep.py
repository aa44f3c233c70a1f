"""Sweep throughput: vectorised training and a process pool against the sequential reference.

    python benchmarks/bench_sweep.py [--epochs 500] [--fractions 0.05 0.2 1.0] [--sweep-seeds 1] [--skip-sweeps]

1. Runs per second on the Concrete grid (MLP 8→64→64→1, 8 seeds × 5 λ₀, AR, SGD with
   momentum, full batch), one grid per training fraction: sequential (local executor),
   vectorised (the 40 runs as one batched model, one process) and a process pool of 2
   (sequential runs); and the same grid with SAM for AR (8 seeds × 5 ρ) at the first
   fraction, sequential and vectorised. Each is a whole ``run_sweep`` into a fresh
   folder, one after the other in one invocation, so the ratios share the machine's
   state; issue 14's targets are printed beside the vectorised rates.
2. Achieved GFLOP/s of vectorised MLP training (the same grids): forward and backward
   matrix-product FLOPs counted analytically (2·n·in·out per product; elementwise work
   not counted) over the wall time of ``fit_stacked`` alone, against a 2048² float32
   matrix product on one thread, the practical ceiling (training runs single-threaded).
3. The packaged ``concrete_reg`` and ``airfoil_reg`` sweeps with the default flags
   (vectorised, one process), ``--no-vectorise`` and ``--jobs 2``, each a fresh
   ``antireg run`` subprocess, and the two sweeps' total per mode (issue 14's target: both
   with the default flags under 3 minutes on 2 cores): wall time, and peak memory
   (resident memory of the driver and its workers, summed, sampled every 0.2 s). With
   ``--sweep-seeds K`` each sweep runs K of its 5 seeds and the wall time is extrapolated
   ×5/K (memory as measured).

Item 1 reports runs per wall-clock second and per CPU second (this process and its
finished children). On a machine shared with other work, wall-clock rates depend on
that work (a pool of 2 needs 2 idle cores); CPU-second rates much less so. The script
prints the load average with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from antireg.data import default_data_dir
from antireg.experiments import ExperimentCfg, load_config, run_sweep
from antireg.experiments.grid import expand
from antireg.experiments.runner import prepare, sweep_settings
from antireg.experiments.sweep import plan
from antireg.vectorised import fit_stacked

GRID = {
    "experiment": "bench_concrete",
    "dataset": {"name": "concrete"},
    "seeds": list(range(8)),
    "model": {"kind": "mlp", "width": 64, "depth": 2, "activation": "relu"},
    "optimizers": {"sgd": {"lr": 0.1, "momentum": 0.9}},
    "ar": {"lambda0": [0.001, 0.003, 0.01, 0.03, 0.1], "decay": [1.0]},
    "ablations": ["none"],
    "add_baseline_zero": False,
}


# the same runs with SAM instead of AR: 8 seeds × 5 ρ, no AR runs
SAM_GRID = {**GRID, "experiment": "bench_concrete_sam", "ar": {"lambda0": []},
            "relatives": {"sam": {"rho": [0.01, 0.02, 0.05, 0.1, 0.2]}}}  # fmt: skip
# issue 14's targets: vectorised / sequential runs per second
TARGETS = {("ar", 36): 8.0, ("ar", 144): 5.0, ("sam", 36): 3.0}
SWEEPS_TARGET_S = 180  # concrete_reg + airfoil_reg with the default flags, 2 cores


def grid(epochs: int, fraction: float, base: dict = GRID) -> ExperimentCfg:
    return ExperimentCfg.model_validate({**base, "fractions": [fraction], "training": {"epochs": epochs}})


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (a pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def runs_per_second(cfg: ExperimentCfg, **kwargs) -> tuple[float, float]:
    """Runs per wall-clock second and per CPU second of one whole sweep."""
    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        result = run_sweep(cfg, out, progress=False, **kwargs)
        return result.n_run / (time.perf_counter() - wall), result.n_run / (_cpu_seconds() - cpu)


def mlp_flops(n: int, dims: list[int]) -> int:
    """Matrix-product FLOPs of one training step on n examples: forward, weight gradients,
    and input gradients of every layer but the first (the data needs none)."""
    products = [a * b for a, b in zip(dims[:-1], dims[1:])]
    return 2 * n * (3 * sum(products) - products[0])


def vectorised_gflops(cfg: ExperimentCfg, data_dir: Path) -> float:
    """GFLOP/s of fit_stacked alone on the grid's runs, trained as one batched model."""
    specs = expand(cfg, 1030)
    with sweep_settings():
        runs = [prepare(s, data_dir) for s in specs]
        start = time.perf_counter()
        fit_stacked([r.model for r in runs], [r.step for r in runs], runs[0].loss_fn, [r.train for r in runs],
                    [r.val for r in runs], cfg.training.epochs, None, [r.generator() for r in runs])  # fmt: skip
        seconds = time.perf_counter() - start
    n_train, n_val = len(runs[0].train[0]), len(runs[0].val[0])
    dims = [runs[0].train[0].shape[1], *[cfg.model.width] * cfg.model.depth, 1]
    val_flops = 2 * n_val * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    flops = len(runs) * cfg.training.epochs * (mlp_flops(n_train, dims) + val_flops)
    return flops / seconds / 1e9


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    with sweep_settings():
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = (time.perf_counter() - start) / repeats
    return 2 * size**3 / seconds / 1e9


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, summed (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
        except OSError:  # the process just ended
            continue
        if stat:
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        todo += children.get(p, [])
    return total


def sweep(config: str, seeds: int, extra: list[str], data_dir: Path) -> tuple[float, float]:
    """(wall seconds, peak MiB) of ``antireg run`` in a fresh subprocess. The peak is the
    resident memory of the sweep's processes (driver and workers) summed, sampled every
    0.2 s: rusage's ru_maxrss would include this process's memory, inherited at fork."""
    only = [arg for s in range(seeds) for arg in ("--only_seed", str(s))]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "antireg", "run", "--config", config, "--output-dir", out,
               "--data-dir", str(data_dir), "--quiet", *only, *extra]  # fmt: skip
        start, peak = time.perf_counter(), 0
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=500, help="epochs per run on the grid (the configs use 500)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2, 1.0],
                        help="training fractions, one grid each (default 0.05 0.2 1.0)")
    parser.add_argument("--sweep-seeds", type=int, default=5, help="seeds of the packaged sweeps to run (of 5)")
    parser.add_argument("--skip-sweeps", action="store_true", help="only the grid, not the packaged sweeps")
    args = parser.parse_args()
    data_dir = Path(default_data_dir()).resolve()
    print(f"Concrete grid: 40 runs (MLP 8-64-64-1, 8 seeds x 5 lambda0, SGD with momentum, full batch), "
          f"{args.epochs} epochs; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    # untimed: one-time imports and data loading, shared by all paths
    runs_per_second(grid(1, args.fractions[0]), vectorise=False)
    print("| grid | fraction (n) | path | runs/s (wall) | vs sequential | runs per CPU-s | vs sequential | target |")
    print("|---|---|---|---|---|---|---|---|")
    flops = []
    # the AR grid at every fraction, the SAM grid (sequential and vectorised) at the first
    grids = [("ar", f, GRID, True) for f in args.fractions] + [("sam", args.fractions[0], SAM_GRID, False)]
    for method, fraction, base, pool in grids:
        cfg = grid(args.epochs, fraction, base)
        n = expand(cfg, 1030)[0].n_train
        rates = {"sequential": runs_per_second(cfg, vectorise=False), "vectorised": runs_per_second(cfg)}
        if pool:
            rates["process pool of 2"] = runs_per_second(cfg, jobs=2, vectorise=False)
        seq_wall, seq_cpu = rates["sequential"]
        for name, (wall, cpu) in rates.items():
            target = TARGETS.get((method, n)) if name == "vectorised" else None
            verdict = f">= {target:g}x {'ok' if wall / seq_wall >= target else 'MISSED'}" if target else ""
            print(f"| {method} | {fraction:g} ({n}) | {name} | {wall:.2f} | {wall / seq_wall:.2f}x | {cpu:.2f} | "
                  f"{cpu / seq_cpu:.2f}x | {verdict} |", flush=True)  # fmt: skip
        if method == "ar":
            flops.append((fraction, n, vectorised_gflops(cfg, data_dir)))
    ceiling = matmul_gflops()
    print(f"\n2048^2 float32 matmul, 1 thread: {ceiling:.1f} GFLOP/s\n"
          "| fraction (n) | vectorised training GFLOP/s | ratio to matmul |\n|---|---|---|")
    for fraction, n, achieved in flops:
        print(f"| {fraction:g} ({n}) | {achieved:.1f} | {achieved / ceiling:.2f} |")
    if args.skip_sweeps:
        return
    scale = 5 / args.sweep_seeds
    note = f" (extrapolated x{scale:g} from {args.sweep_seeds} of 5 seeds)" if scale != 1 else ""
    print(f"\nPackaged sweeps{note}; peak RSS summed over the sweep's processes\n"
          "| sweep | runs | wall s | peak MiB |\n|---|---|---|---|")
    modes = (("default flags (vectorised)", []), ("--no-vectorise", ["--no-vectorise"]),
             ("--jobs 2", ["--jobs", "2"]))  # fmt: skip
    together = {label: 0.0 for label, _ in modes}
    for config in ("concrete_reg", "airfoil_reg"):
        total = len(plan(load_config(config), data_dir))
        for label, extra in modes:
            seconds, peak = sweep(config, args.sweep_seeds, extra, data_dir)
            together[label] += seconds * scale
            print(f"| {config}, {label} | {total} | {seconds * scale:.0f} | {peak:.0f} |", flush=True)
    for label, seconds in together.items():
        print(f"| both sweeps, {label} | | {seconds:.0f} | |")
    both = together[modes[0][0]]
    print(f"\nboth sweeps with the default flags: {both:.0f} s, target <= {SWEEPS_TARGET_S} s "
          f"{'ok' if both <= SWEEPS_TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
