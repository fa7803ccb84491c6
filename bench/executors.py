"""Executors: where the runs of a sweep are computed. `local` runs them in this process (or a
process pool with `workers`), `ray` submits each as a Ray task on a local instance or a cluster.

Every executor takes a picklable `work(shared, job)` function, the data every run shares (shipped
to each worker process once, or put in the Ray object store once) and the jobs, and yields
`(job, output)` as runs complete; an infrastructure failure (a dead worker) comes back as the
exception instead of an output, so the driver can record it and go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from collections.abc import Callable, Iterator
from typing import Any

from bench.errors import BenchError

Work = Callable[[Any, Any], Any]
Resources = Callable[[Any], dict]

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Runs in this process, one after another; `in_process` lets the driver show per-epoch progress."""

    in_process = True

    def map(self, work: Work, shared: Any, jobs: list, resources: Resources) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, work(shared, job)


_SHARED: Any = None


def _init_worker(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _call_in_worker(work: Work, job: Any) -> Any:
    return work(_SHARED, job)


class PoolExecutor:
    """A pool of `workers` fresh (spawned) processes; the shared data is sent once to each."""

    in_process = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, work: Work, shared: Any, jobs: list, resources: Resources) -> Iterator[tuple[Any, Any]]:
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                      initargs=(shared,))
        try:
            futures = {pool.submit(_call_in_worker, work, job): job for job in jobs}
            for future in cf.as_completed(futures):
                error = future.exception()
                yield futures[future], error if error is not None else future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _call_in_ray(work: Work, shared: Any, job: Any) -> Any:
    return work(shared, job)


class RayExecutor:
    """One Ray task per run with the resources the run asks for. Connects to `address` when given,
    otherwise to an already initialised Ray, otherwise starts a local instance (`workers` CPUs)."""

    in_process = False

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address, self.workers = address, workers

    def map(self, work: Work, shared: Any, jobs: list, resources: Resources) -> Iterator[tuple[Any, Any]]:
        try:
            import ray
        except ImportError:
            raise BenchError("--executor ray: the 'ray' package is not installed (pip install 'ray[default]')") from None
        started = not ray.is_initialized()
        if started:
            local = {} if self.address else {"num_cpus": self.workers, "include_dashboard": False}
            ray.init(address=self.address, log_to_driver=False, **local)
        pending: dict = {}
        try:
            shared_ref = ray.put(shared)  # once: every task reads the same stored copy
            task = ray.remote(_call_in_ray)
            pending = {task.options(**resources(job)).remote(work, shared_ref, job): job for job in jobs}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        yield job, ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        yield job, exc
        finally:
            for ref in pending:  # left over only when the driver stops early
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None):
    """The executor named `kind` ('local' or 'ray')."""
    if workers is not None and workers < 1:
        raise BenchError(f"--workers {workers}: expected a positive integer")
    if kind == "local":
        if address:
            raise BenchError(f"--ray-address {address}: only meaningful with --executor ray")
        return PoolExecutor(workers) if workers and workers > 1 else LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, workers)
    raise BenchError(f"--executor '{kind}': expected one of {', '.join(EXECUTORS)}")
