"""ARRidgeCV over a 100-alpha grid against single and repeated sklearn Ridge fits.

Run: ``python benchmarks/bench_linear.py``.  Targets: ARRidgeCV LOO / one Ridge <= 3;
ARRidgeCV(cv=5) / sklearn RidgeCV(cv=5) over the same positive alphas <= 0.1.

The three timings are interleaved within each repeat (so load drift on a shared
machine hits them alike) and BLAS runs on one thread: with several, sklearn's
Ridge (numpy's and scipy's OpenBLAS pools side by side) was erratic on a busy
machine, up to 40 times slower, which measures scheduling rather than work.
"""

import time

import numpy as np
from sklearn.linear_model import Ridge, RidgeCV
from threadpoolctl import threadpool_limits

from antireg.linear import ARRidgeCV

N_SAMPLES, N_FEATURES, N_ALPHAS, REPEATS, NUMBER = 2000, 200, 100, 3, 5


def _seconds(fn, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    y = X @ rng.normal(size=N_FEATURES) + rng.normal(size=N_SAMPLES)
    alphas = np.geomspace(1e-3, 1e3, N_ALPHAS)

    def refits():
        for alpha in alphas:
            Ridge(alpha=alpha).fit(X, y)

    cases = {
        "sklearn Ridge, one fit": (lambda: Ridge(alpha=1.0).fit(X, y), NUMBER),
        f"ARRidgeCV, {N_ALPHAS} alphas (LOO)": (
            lambda: ARRidgeCV(n_alphas=N_ALPHAS).fit(X, y),
            NUMBER,
        ),
        f"sklearn Ridge, {N_ALPHAS} refits": (refits, 1),
        f"ARRidgeCV(cv=5), {N_ALPHAS} alphas": (
            lambda: ARRidgeCV(n_alphas=N_ALPHAS, cv=5).fit(X, y),
            1,
        ),
        f"sklearn RidgeCV(cv=5), {N_ALPHAS}": (lambda: RidgeCV(alphas=alphas, cv=5).fit(X, y), 1),
    }
    times = {name: [] for name in cases}
    with threadpool_limits(limits=1):
        for fn, _ in cases.values():
            fn()  # warm up
        for _ in range(REPEATS):
            for name, (fn, number) in cases.items():
                times[name].append(_seconds(fn, number))

    one = np.array(times["sklearn Ridge, one fit"])
    print(f"n={N_SAMPLES}, d={N_FEATURES}, {N_ALPHAS} alphas, 1 BLAS thread, median of {REPEATS}")
    print(f"{'method':<32}{'ms':>10}{'/ one Ridge':>14}")
    for name, seconds in times.items():
        seconds = np.array(seconds)
        print(f"{name:<32}{1e3 * np.median(seconds):>10.2f}{np.median(seconds / one):>14.2f}")
    ratios = {
        "ARRidgeCV LOO / one sklearn Ridge": (
            times[f"ARRidgeCV, {N_ALPHAS} alphas (LOO)"], times["sklearn Ridge, one fit"], 3.0),
        "ARRidgeCV(cv=5) / sklearn RidgeCV(cv=5)": (
            times[f"ARRidgeCV(cv=5), {N_ALPHAS} alphas"], times[f"sklearn RidgeCV(cv=5), {N_ALPHAS}"], 0.1),
    }
    print()
    for name, (ours, ref, target) in ratios.items():
        ratio = np.median(np.array(ours) / np.array(ref))
        verdict = "met" if ratio <= target else "NOT met"
        print(f"{name:<42}{ratio:>8.3f}   target <= {target:g}: {verdict}")


if __name__ == "__main__":
    main()
