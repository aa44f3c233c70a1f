"""Where a sweep's work items run: in this process, in a local process pool, or on Ray,
and the process settings they train under (:func:`sweep_settings`).

An executor maps one job function over the items and yields each item with its
outcome (the function's return value, or the exception it raised) as it finishes;
one failed item never stops the others. Every executor runs the same job
(:func:`antireg.experiments.jobs.train_item`) on the same items and returns its outputs
to the sweep, which writes them, so the files a sweep writes do not depend on which one ran it.

Stopping: when the caller stops iterating (it was interrupted, or it gave up), an
executor cancels what has not started and stops what is running, within seconds, and
leaves no process behind: the pool's workers are terminated (they ignore Ctrl-C,
which goes to the whole process group, so that the driver alone decides), and they
die with the driver if it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from antireg.errors import ConfigError

T = TypeVar("T")
Outcome = Any  # the task function's return value, or the Exception it raised

EXECUTORS = ("local", "process", "ray")


@functools.cache
def _keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse rather than hand it back to the kernel.

    Batched training allocates and frees tensors of a few MiB every step. By default
    glibc serves each from fresh pages (mmap, or a heap it has just trimmed), which the
    kernel must zero and fault in: a third of a vectorised step's time at small n. The
    same as running with ``MALLOC_MMAP_THRESHOLD_=32MiB MALLOC_TRIM_THRESHOLD_=512MiB``;
    it lasts for the process (mallopt cannot be undone), which is the sweep's own.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 512 << 20)
    libc.mallopt(m_mmap_threshold, 32 << 20)


@contextlib.contextmanager
def sweep_settings() -> Iterator[None]:
    """The settings a sweep's runs train under. One intra-op thread, so that results are
    bit-identical whichever executor (and however many workers) ran them; parallelism
    comes from the executor. And freed memory kept for reuse (:func:`_keep_freed_memory`)."""
    import torch

    _keep_freed_memory()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Executor:
    """Runs ``fn(task)`` for every task, yielding ``(task, outcome)`` as each finishes."""

    #: True when tasks may run on machines that do not see this one's disk (their
    #: device is resolved there, not here).
    remote = False

    def map(self, fn: Callable[[T], Any], tasks: Iterable[T]) -> Iterator[tuple[T, Outcome]]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """One task after another, in this process."""

    def map(self, fn: Callable[[T], Any], tasks: Iterable[T]) -> Iterator[tuple[T, Outcome]]:
        for task in tasks:
            try:
                outcome = fn(task)
            except Exception as exc:  # noqa: BLE001 - one broken task must not stop the sweep
                outcome = exc
            yield task, outcome


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
STOP_GRACE_S = 3.0  # a terminated worker has this long to exit before it is killed


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered when the block ends): a worker forked now
    inherits the block, and only lifts it once it has its own handlers."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _init_worker() -> None:
    """A pool worker: Ctrl-C ignored (the driver stops the pool), SIGTERM kills, killed
    too when the driver dies (Linux), one torch thread; then the stop signals unblocked."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    torch.set_num_threads(1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the tasks not started, terminate the workers, kill those that linger, reap them."""
    with _stop_signals_blocked():  # a second Ctrl-C must not cut this short and orphan a worker
        procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            with contextlib.suppress(OSError, ValueError):
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)


class ProcessExecutor(Executor):
    """A pool of ``jobs`` local worker processes.

    On Linux the workers are forked: they start at once, with this process's imports
    and loaded data (a spawned worker spends seconds importing torch before its first
    run). Each worker sets torch to one thread before anything else, as torch's own
    DataLoader workers do, so the parent's thread pool is never used in a child. Where
    forking is unsafe (this process has initialised CUDA, or another platform) they
    are spawned. A worker ignores Ctrl-C: on an interrupt the driver stops the pool
    (:func:`_stop_pool`), rather than each worker abandoning its task and starting the next.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def map(self, fn: Callable[[T], Any], tasks: Iterable[T]) -> Iterator[tuple[T, Outcome]]:
        import torch

        fork = sys.platform == "linux" and not torch.cuda.is_initialized()
        context = multiprocessing.get_context("fork" if fork else "spawn")
        pool = ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_init_worker)
        finished = False
        try:
            with _stop_signals_blocked():  # the workers start here
                futures = {pool.submit(fn, task): task for task in tasks}
            for fut in as_completed(futures):
                exc = fut.exception()
                yield futures[fut], exc if exc is not None else fut.result()
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:  # interrupted, or the caller stopped iterating
                _stop_pool(pool)


def _call(fn: Callable[[T], Any], task: T) -> Any:
    """The Ray task: ``fn(task)`` (``ray.remote`` needs a plain function, not a partial)."""
    return fn(task)


class RayExecutor(Executor):
    """Ray tasks on the cluster at ``address``, or on a local Ray instance started for
    the sweep with ``num_cpus`` CPUs (all of them when None). Each task takes one CPU,
    and one GPU when ``gpus`` is set. Worker nodes need antireg installed and the data
    folder at the same path; they return results, so they need not see the output folder.
    """

    remote = True

    def __init__(self, address: str | None = None, num_cpus: int | None = None, gpus: bool = False) -> None:
        try:
            import ray  # noqa: F401 - fail early, with the fix, when the extra is missing
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'antireg[ray]'") from None
        self.address, self.num_cpus, self.gpus = address, num_cpus, gpus

    def map(self, fn: Callable[[T], Any], tasks: Iterable[T]) -> Iterator[tuple[T, Outcome]]:
        import ray

        started = not ray.is_initialized()  # a caller's own Ray session is left as it is
        if started:
            local = {} if self.address else {"num_cpus": self.num_cpus, "include_dashboard": False}
            ray.init(address=self.address, log_to_driver=False, **local)
        try:
            remote = ray.remote(num_cpus=1, num_gpus=int(self.gpus), max_retries=0)(_call)
            fn_ref = ray.put(fn)
            pending = {remote.remote(fn_ref, task): task for task in tasks}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(done[0])
                try:
                    outcome = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - reported per task, like the other executors
                    outcome = getattr(exc, "cause", None) or exc  # the task's own error, not Ray's wrapper
                yield task, outcome
        finally:
            if started:
                ray.shutdown()


def make_executor(name: str, jobs: int = 1, ray_address: str | None = None, gpus: bool = False) -> Executor:
    """``local``, ``process`` (``jobs`` workers) or ``ray`` (``ray_address``, else a local
    instance with ``jobs`` CPUs, or all of them when ``jobs`` is 1)."""
    if name not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if ray_address is not None and name != "ray":
        raise ConfigError(f"--ray-address needs --executor ray, not {name}")
    if name == "local":
        return LocalExecutor()
    if name == "process":
        return ProcessExecutor(min(jobs, os.cpu_count() or jobs))
    return RayExecutor(ray_address, jobs if jobs > 1 else None, gpus)
