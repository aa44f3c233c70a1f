"""Time and peak memory of the empirical NTK of MLPs d→256→256→10 (float64).

Run: ``python benchmarks/bench_ntk.py`` (``--generic`` adds the plain per-sample
Jacobian path, ``factorize_linear=False``, which is O(n²·k·P) and slow: use small
``--sizes``). Each case runs in a fresh process so that its peak resident memory
(above the process's baseline after imports and data) is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np
import torch

from antireg.models import make_model
from antireg.ntk import empirical_ntk


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _case(in_dim: int, n: int, factorize: bool) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = make_model("mlp", in_dim, 10, width=256, depth=2)
    X = torch.randn(n, in_dim)
    base = _rss_bytes()
    start = time.perf_counter()
    K = empirical_ntk(model, X, factorize_linear=factorize)
    t_ntk = time.perf_counter() - start
    start = time.perf_counter()
    np.linalg.eigvalsh(K.numpy())
    t_eig = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return t_ntk, t_eig, (peak - base) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--in_dims", type=int, nargs="+", default=[784, 64])
    parser.add_argument("--generic", action="store_true", help="also time factorize_linear=False")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, mean-over-outputs kernel")
    print(f"{'model':<18}{'path':<12}{'n':>6}{'NTK s':>10}{'eigvalsh s':>12}{'peak MiB':>10}")
    for in_dim in args.in_dims:
        n_params = sum(p.numel() for p in make_model("mlp", in_dim, 10, width=256, depth=2).parameters())
        name = f"{in_dim}-256-256-10"
        for factorize in [True, False] if args.generic else [True]:
            for n in args.sizes:
                with ctx.Pool(1) as pool:
                    t_ntk, t_eig, mib = pool.apply(_case, (in_dim, n, factorize))
                path = "factorised" if factorize else "jacobian"
                print(f"{name:<18}{path:<12}{n:>6}{t_ntk:>10.2f}{t_eig:>12.2f}{mib:>10.0f}", flush=True)
        print(f"  ({name}: P = {n_params} parameters)")


if __name__ == "__main__":
    main()
