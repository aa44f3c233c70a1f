"""Stress grid: diverged runs per safeguard case and λ₀, from 0 up to 10× the spectral bound.

    python benchmarks/bench_stress.py [--config stress_concrete] [--data-dir DIR] [--jobs 1]

Runs the stress config (λ₀ in units of the run's spectral bound μ_min/n, ``ar.lambda0_unit:
bound``) into a temporary folder, then reads the per-run CSV ``results/<experiment>.csv``
and prints, per ablation (rows) and λ₀ multiple c (columns), diverged / total runs over
seeds × fractions. With the constant schedule AR asks for λ(n) = −c·μ_min/n; the spectral
clamp, where on, moves it up to −(1−η)·μ_min/n. The λ = 0 column is the shared ERM baseline,
trained without safeguards. Target: with all safeguards on (``none``), no run diverges.
The summary CSV cannot show this: it keeps only the λ₀ chosen on validation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pandas as pd

from antireg.experiments import load_config, run_sweep

BASELINE = "erm (λ = 0, unguarded)"


def divergence_table(runs: pd.DataFrame, ablations: list[str]) -> pd.DataFrame:
    """Cells ``diverged/total`` per ablation (rows: the baseline, then ``ablations``) and λ₀ (columns)."""
    runs = runs.assign(
        case=runs["ablation"].where(runs["method"] != "erm", BASELINE), multiple=-runs["lambda0"] + 0.0
    )  # + 0.0: the baseline's −0.0 reads as 0
    counts = runs.groupby(["case", "multiple"], sort=False)["diverged"].agg(["sum", "count"])
    cells = counts["sum"].astype(int).astype(str) + "/" + counts["count"].astype(str)
    table = cells.unstack("multiple").fillna("")
    return table.loc[[c for c in (BASELINE, *ablations) if c in table.index], sorted(table.columns)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="stress_concrete", help="a stress config (packaged name or path)")
    parser.add_argument("--data-dir", default=None, help="data folder (default $ANTIREG_DATA_DIR, else data/raw)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if cfg.ar.lambda0_unit != "bound":
        parser.error(f"{args.config} gives λ₀ in absolute units; a stress config sets ar.lambda0_unit: bound")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_sweep(cfg, out, data_dir=args.data_dir, jobs=args.jobs, progress=False)
        seconds = time.perf_counter() - start
        runs = pd.read_csv(result.runs_csv)
    print(f"{cfg.experiment}: {len(runs)} runs ({cfg.model.kind}, {', '.join(cfg.optimizers)}, "
          f"{cfg.training.epochs} epochs, seeds {cfg.seeds}, fractions {cfg.fractions}) in {seconds:.0f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    table = divergence_table(runs, cfg.ablations)
    print("diverged / runs; columns: λ₀ as a multiple c of the spectral bound μ_min/n\n")
    print("| ablation | " + " | ".join(f"{c:g}×" for c in table.columns) + " |")
    print("|---|" + "---|" * len(table.columns))
    for case, row in table.iterrows():
        print(f"| {case} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
