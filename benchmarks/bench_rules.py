"""Step time and peak memory of every gradient rule, as ratios to plain ERM.

    python benchmarks/bench_rules.py [--repeats 15] [--steps 20] [--threads 1]

Also the ``antireg.optim`` wrappers (``step(closure)``) against the plain torch loop, and
against the same algorithms written by hand around that loop (davda54/sam's two steps; AR's
penalty, clip and trust region called in turn): the wrapper's own cost, apart from the
algorithm's.

Two MLPs on random data: "small" 8→64→64→1 on 512×8, full batch, MSE; "large"
784→256→256→10, batch 256, cross-entropy; float32, SGD with momentum.

Time: CPU time of the process (robust to other load on a shared machine); every
method trains its own copy of the model; one repeat runs a block of
``--steps`` steps of each method in turn (the order rotating between repeats, so
drift and cache effects fall on all alike); a method's time is the median over
repeats of its per-step time, and its ratio is that over ERM's (TrainStep with the
ERM rule). "torch" is a hand-written loop (zero_grad, mean().backward(), step),
which shows what TrainStep itself costs.

Memory: the peak, during two steps after a warm-up step, of the bytes of live
tensors torch allocates on the CPU (parameters, gradients, optimizer state,
activations, autograd graph, temporaries), from torch.profiler's memory timeline.
It does not see the Python heap or allocator caching. Ratios are over ERM's peak,
which includes the parameters, gradients and momentum that every method shares.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from typing import Callable

import torch
import torch.nn.functional as F

from antireg.models import make_model
from antireg.penalty import ProximityPenalty
from antireg.rules import make_rule
from antireg.safeguards import GradClip, TrustRegion
from antireg.step import TrainStep

SIZES = {
    "small": {"widths": (8, 64, 64, 1), "n": 512, "batch": 512},
    "large": {"widths": (784, 256, 256, 10), "n": 256, "batch": 256},
}

# name → (rule name, rule parameters), all driven through TrainStep; "ar" adds the safeguards.
METHODS = {
    "erm": ("erm", {}),
    "ar": ("erm", {}),
    "flooding": ("flooding", {"b": 0.01}),
    "sam": ("sam", {"rho": 0.05}),
    "asam": ("asam", {"rho": 0.5, "eta": 0.01}),
    "gsam": ("gsam", {"rho": 0.05, "alpha": 0.1}),
    "gr_fd_forward": ("gr_fd_forward", {"gamma": 0.01, "eps": 0.01}),
    "gr_fd_backward": ("gr_fd_backward", {"gamma": 0.01, "eps": 0.01}),
    "gr_db": ("gr_db", {"gamma": 0.01}),
    "gam": ("gam", {"rho": 0.02, "alpha": 0.1}),
}
TARGETS = {"ar": 1.10, "sam": 2.2, "asam": 2.2, "gr_fd_forward": 2.2, "gr_fd_backward": 2.2}
# antireg.optim wrappers, each against the plain torch loop ("torch"): name → (class name, kwargs, target)
WRAPPERS = {
    "optim.SAM": ("SAM", {"rho": 0.05}, 2.05),
    "optim.ASAM": ("ASAM", {"rho": 0.5, "eta": 0.01}, 2.05),
    "optim.GSAM": ("GSAM", {"rho": 0.05, "alpha": 0.1}, 2.05),
    # SPEC's θ_c = 0, clipping and a trust region around θ₀ (G and R small enough to fire)
    "optim.AntiReg": ("AntiReg", {"lam": -1e-3, "max_norm": 1.0, "radius_factor": 1.0}, 1.05),
    # θ_c = θ₀ as well: the penalty and the trust region both read the one copy of θ₀
    "optim.AntiReg/θ₀": ("AntiReg", {"lam": -1e-3, "max_norm": 1.0, "radius_factor": 1.0, "center": "init"}, 1.05),
    # θ_c = 0 and no trust region: nothing of θ₀ is kept
    "optim.AntiReg0": ("AntiReg", {"lam": -1e-3, "max_norm": 1.0, "radius_factor": None}, 1.05),
}
# the same algorithms written out around the plain loop: what their arithmetic costs without a wrapper
HAND = {"hand.SAM": "optim.SAM", "hand.AntiReg": "optim.AntiReg/θ₀"}
AR_MEMORY_TARGET = 1.10  # optim.AntiReg's peak memory / the plain loop's
FGR_TARGET = 0.8  # F-GR's step / double backprop's, on the large MLP


def mlp(size: str) -> torch.nn.Module:
    """The library's MLP of ``size``, as the runner builds it (parameters in one flat buffer)."""
    widths = SIZES[size]["widths"]
    return make_model("mlp", widths[0], widths[-1], width=widths[1], depth=len(widths) - 2)


def ar_stages(model: torch.nn.Module) -> dict[str, object]:
    """AR's penalty (θ_c = θ₀), clip and trust region, sharing one θ₀ as the sweep builds them."""
    p = list(model.parameters())
    penalty = ProximityPenalty(p, lam=-1e-3, center="init")
    return {"penalty": penalty, "clip": GradClip(p, max_norm=1.0),
            "trust_region": TrustRegion(p, factor=1.0, ref=penalty.center)}


def build(size: str, method: str) -> Callable[[], object]:
    """A zero-argument function that runs one training step of ``method``."""
    cfg = SIZES[size]
    torch.manual_seed(0)
    widths = cfg["widths"]
    model = mlp(size)
    x = torch.randn(cfg["n"], widths[0])
    if widths[-1] == 1:
        y = torch.randn(cfg["n"], 1)
        loss_fn = lambda out, t: F.mse_loss(out, t, reduction="none").mean(1)  # noqa: E731
    else:
        y = torch.randint(0, widths[-1], (cfg["n"],))
        loss_fn = lambda out, t: F.cross_entropy(out, t, reduction="none")  # noqa: E731
    xb, yb = x[: cfg["batch"]], y[: cfg["batch"]]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    if method == "torch":

        def plain() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).mean().backward()
            opt.step()

        return plain

    if method == "hand.SAM":  # davda54/sam's two steps, written out: the wrapper's reference

        def hand_sam() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).mean().backward()
            params = [p for p in model.parameters() if p.grad is not None]
            with torch.no_grad():
                scale = 0.05 / (torch.norm(torch.stack([p.grad.norm(p=2) for p in params]), p=2) + 1e-12)
                old = [p.data.clone() for p in params]
                for p in params:
                    p.add_(p.grad * scale)
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).mean().backward()
            with torch.no_grad():
                for p, o in zip(params, old):
                    p.data = o
            opt.step()

        return hand_sam

    if method == "hand.AntiReg":  # AR's three stages around the plain loop, without the wrapper
        stages = ar_stages(model)
        penalty, clip, region = stages["penalty"], stages["clip"], stages["trust_region"]

        def hand_ar() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).mean().backward()
            penalty()
            clip()
            opt.step()
            region()

        return hand_ar

    if method in WRAPPERS:
        import antireg.optim

        name, kwargs, _ = WRAPPERS[method]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # AntiReg: no spectrum given
            wrapped = getattr(antireg.optim, name)(model.parameters(), torch.optim.SGD, modules=model, lr=1e-3,
                                                   momentum=0.9, **kwargs)

        def closure() -> torch.Tensor:
            wrapped.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb).mean()
            loss.backward()
            return loss

        return lambda: wrapped.step(closure)

    rule_name, params = METHODS[method]
    safeguards = ar_stages(model) if method == "ar" else {}
    step = TrainStep(model, opt, make_rule(rule_name, **params), **safeguards)
    closure = lambda: loss_fn(model(xb), yb)  # noqa: E731
    return lambda: step(closure)


def time_methods(size: str, methods: list[str], repeats: int, steps: int) -> dict[str, float]:
    """Median CPU seconds per step of each method, blocks interleaved across methods.

    CPU time of this process rather than wall time: other load on the machine
    then inflates no method's time (with one torch thread it is the step's compute).
    """
    runs = {m: build(size, m) for m in methods}
    for run in runs.values():  # warm-up
        for _ in range(3):
            run()
    samples: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(repeats):
        order = methods[r % len(methods) :] + methods[: r % len(methods)]
        for m in order:
            start = time.process_time()
            for _ in range(steps):
                runs[m]()
            samples[m].append((time.process_time() - start) / steps)
    return {m: statistics.median(s) for m, s in samples.items()}


def peak_memory(size: str, method: str) -> float:
    """Peak bytes of live torch CPU tensors over two steps (after one warm-up step)."""
    from torch.profiler import ProfilerActivity, profile

    run = build(size, method)
    run()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        run()
        run()
    with tempfile.NamedTemporaryFile(suffix=".json") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # export_memory_timeline: deprecated, still exact on CPU
        prof.export_memory_timeline(f.name, device="cpu")
        _, sizes = json.load(open(f.name))
    return float(max(sum(s) for s in sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = ["torch", *METHODS, *WRAPPERS, *HAND]

    times = {size: time_methods(size, methods, args.repeats, args.steps) for size in SIZES}
    # not the hand-written loops: torch's memory profiler cannot follow their p.data assignments
    memory = {size: {m: peak_memory(size, m) for m in methods if m not in HAND} for size in SIZES}

    print(
        f"torch {torch.__version__}, ReLU MLPs, {args.threads} thread(s), "
        f"median CPU time of {args.repeats} repeats × {args.steps} steps"
    )
    header = f"{'method':<17}" + "".join(f"{s + ' ms':>10}{'×ERM':>7}{'mem×ERM':>9}" for s in SIZES)
    print(header + f"{'target':>8}")
    print("-" * len(header + " " * 8))
    verdicts = []
    for m in methods:
        if m in HAND:
            continue
        row = f"{m:<17}"
        for size in SIZES:
            t, mem = times[size][m], memory[size][m]
            row += f"{t * 1e3:>10.3f}{t / times[size]['erm']:>7.2f}{mem / memory[size]['erm']:>9.2f}"
        target = TARGETS.get(m)
        if target is not None:
            worst = max(times[size][m] / times[size]["erm"] for size in SIZES)
            verdicts.append(worst <= target)
            row += f"{'≤' + str(target):>8} {'ok' if worst <= target else 'MISSED'}"
        print(row)
    for size in SIZES:  # the target is the large MLP's (issue 13); the small one is shown beside it
        ratio = times[size]["gr_fd_forward"] / times[size]["gr_db"]
        verdict = ""
        if size == "large":
            verdicts.append(ratio <= FGR_TARGET)
            verdict = f"  target ≤{FGR_TARGET} {'ok' if ratio <= FGR_TARGET else 'MISSED'}"
        print(f"F-GR/db ({size}): {ratio:.2f}{verdict}")
    print("antireg.optim wrappers / the plain torch loop (zero_grad, backward, SGD step):")
    for m, (_, _, target) in WRAPPERS.items():
        ratios = [times[size][m] / times[size]["torch"] for size in SIZES]
        verdicts.append(max(ratios) <= target)
        print(f"  {m:<17}" + "".join(f"{size} {r:.2f}  " for size, r in zip(SIZES, ratios))
              + f"target ≤{target} {'ok' if max(ratios) <= target else 'MISSED'}")
    print("the same algorithms written by hand around the plain loop (davda54/sam's two steps; AR's three stages):")
    for hand, wrapper in HAND.items():
        print(f"  {hand:<17}" + "".join(f"{size} {times[size][hand] / times[size]['torch']:.2f}  " for size in SIZES)
              + "  wrapper / by hand: "
              + "  ".join(f"{size} {times[size][wrapper] / times[size][hand]:.2f}" for size in SIZES))
    for m in ("optim.AntiReg", "optim.AntiReg/θ₀", "optim.AntiReg0"):
        for size in SIZES:
            ratio = memory[size][m] / memory[size]["torch"]
            verdicts.append(ratio <= AR_MEMORY_TARGET)
            print(f"{m} peak memory / plain loop ({size}): {ratio:.2f}  target ≤{AR_MEMORY_TARGET} "
                  f"{'ok' if ratio <= AR_MEMORY_TARGET else 'MISSED'}")
    for size in SIZES:  # the floor of any AR that keeps θ₀ (centre or trust-region reference): one copy of θ
        n = sum(p.numel() for p in mlp(size).parameters())
        print(f"one copy of θ ({size}, {n} float32) / plain loop's peak: {4 * n / memory[size]['torch']:.2f}")
    for size in SIZES:
        print(f"ERM peak memory ({size}): {memory[size]['erm'] / 2**20:.2f} MiB")
    print("all targets met" if all(verdicts) else "some targets MISSED")


if __name__ == "__main__":
    main()
