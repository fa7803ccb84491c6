"""Executors: where the runs of a sweep are computed. `local` runs them in this process (or a
process pool with `workers`), `ray` submits each as a Ray task on a local instance or a cluster.

By default (`workers` None) the local executor chooses (`automatic_workers`): one process per
available CPU and at most one per run, as many as fit in memory (this process and the largest
estimated peaks of the runs that may be computed at once, `predictors.base.Memory`, under
MEMORY_SHARE of the memory), each with an equal share of the CPUs as its thread count; one is this
process. `BENCH_WORKERS` sets the default.

Every executor takes a picklable `work(shared, job)` function, the data every run shares (shipped
to each worker process once, or put in the Ray object store once) and the jobs, and yields
`(job, output)` as runs complete; an infrastructure failure (a dead worker) comes back as the
exception instead of an output, so the driver can record it and go on. The Ray executor is
bench/ray_executor.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
from collections.abc import Generator, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.ray_executor import RayExecutor, Resources, Work

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Runs in this process, one after another; `in_process` lets the driver show per-epoch progress."""

    in_process = True
    where = "in this process"

    def map(self, work: Work, shared: Any, jobs: list, resources: Resources) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, work(shared, job)


_SHARED: Any = None


def _init_worker(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _call_in_worker(work: Work, job: Any) -> Any:
    return work(_SHARED, job)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MEMORY_SHARE = 0.8  # this process and the runs computed at once stay under this share of the memory
WORKERS_VARIABLE = "BENCH_WORKERS"
GIB = 1 << 30


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container or `taskset` limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class MemoryReading:
    """Memory the machine can give a sweep: `bytes`, and what they are: "available" (MemAvailable of
    /proc/meminfo, what can be allocated without swapping; what other processes and this one hold is
    left out) or "physical" (all of the machine's memory, where /proc/meminfo cannot be read)."""

    bytes: int
    source: str


def _memory() -> MemoryReading | None:
    """The machine's memory as a `MemoryReading`, or None when neither figure can be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return MemoryReading(int(line.split()[1]) * 1024, "available")
    except (OSError, ValueError, IndexError):
        pass
    try:
        return MemoryReading(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical")
    except (ValueError, OSError, AttributeError):
        return None


def _resident_bytes() -> int:
    """This process's resident memory now (VmRSS), else its peak so far, else 0."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # not on a Unix
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class PoolChoice:
    """How many processes compute a sweep's runs (1: this process), and why in words."""

    workers: int
    why: str


def choose_workers(peaks: list[tuple[str, int]], cpus: int, memory: MemoryReading | None, parent: int) -> PoolChoice:
    """Processes for runs with these estimated peaks ((predictor, bytes), one per run): one per CPU,
    at most one per run, and no more than keep this process (`parent` bytes) and the largest peaks
    that many runs may reach at once under MEMORY_SHARE of the memory the sweep can have (`memory`,
    plus `parent` itself when `memory` is what is available). When not even one run fits, one: this
    process, which computes a run without a second copy of the data."""
    by_cpu = max(1, min(cpus, len(peaks)))
    why = f"{_count(cpus, 'CPU')} for {_count(len(peaks), 'run')}"
    if not peaks:
        return PoolChoice(1, why)
    if memory is None:
        return PoolChoice(by_cpu, f"{why}; the machine's memory is unknown: not limited by it")
    ranked = sorted((bytes_ for _, bytes_ in peaks), reverse=True)
    largest = max(peaks, key=lambda p: p[1])[0]
    limit = MEMORY_SHARE * (memory.bytes + (parent if memory.source == "available" else 0))
    fits = 0
    while fits < by_cpu and parent + sum(ranked[:fits + 1]) <= limit:
        fits += 1
    whole = (f"{_gib(memory.bytes)} available + this process" if memory.source == "available"
             else f"{_gib(memory.bytes)} of physical memory")
    why += (f"; estimated peak {_gib(ranked[0])} per run ({largest}, the largest), this process {_gib(parent)}, "
            f"cap {MEMORY_SHARE:.0%} of {whole} = {_gib(limit)}")
    if fits == 0:
        return PoolChoice(1, f"{why}: not even one run fits beside this process, so this process computes them "
                             "(no second copy of the data; it may still run out of memory)")
    if fits < by_cpu:
        return PoolChoice(fits, f"{why}: room for {_count(fits, 'run')} at a time")
    return PoolChoice(by_cpu, why)


def automatic_workers(peaks: list[tuple[str, int]]) -> PoolChoice:
    """Processes for runs with these estimated peaks ((predictor, bytes), one per run) when
    `--workers` is not given: `BENCH_WORKERS` when set, else `choose_workers` on this machine now."""
    given = os.environ.get(WORKERS_VARIABLE)
    if given:
        if not given.isdigit() or int(given) < 1:
            raise BenchError(f"{WORKERS_VARIABLE}={given}: expected a positive integer")
        return PoolChoice(int(given), f"{WORKERS_VARIABLE}={given}")
    return choose_workers(peaks, available_cpus(), _memory(), _resident_bytes())


@contextmanager
def _child_threads(threads: int) -> Iterator[None]:
    """Processes spawned in the block inherit `threads` as their OpenMP/BLAS thread count, so that
    workers x threads does not oversubscribe the CPUs; where the user set any of these counts, the
    environment is left as it is."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    if not any(saved.values()):
        os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WorkerDied(RuntimeError):
    """The process computing a run died (killed, out of memory, a crash in native code)."""


class PoolExecutor:
    """A pool of `workers` fresh (spawned) processes; the shared data is sent once to each. Each
    process gets an equal share of the available CPUs as its thread count. At most `workers` runs are
    submitted at a time, so when a process dies the runs it may have held are known: each is run
    again alone in a fresh process, and only the one that kills its process comes back as
    `WorkerDied`; the runs not yet started go on in a new pool."""

    in_process = False

    def __init__(self, workers: int) -> None:
        self.workers = workers

    @property
    def threads(self) -> int:
        return max(1, available_cpus() // self.workers)

    @property
    def where(self) -> str:
        threads = os.environ.get("OMP_NUM_THREADS") or str(self.threads)
        return f"in {self.workers} processes ({threads} thread{'s' if threads != '1' else ''} each)"

    def map(self, work: Work, shared: Any, jobs: list, resources: Resources) -> Iterator[tuple[Any, Any]]:
        waiting = list(jobs)
        while waiting:
            suspects, waiting = yield from self._pool(work, shared, waiting, self.workers)
            for job in suspects:  # one of them killed its process: with several, run each alone to tell which
                died = [job]
                if len(suspects) > 1:
                    died, _ = yield from self._pool(work, shared, [job], 1)
                for dead in died:
                    yield dead, WorkerDied("the process computing this run died (killed, out of memory, or a crash in "
                                           "native code); the other runs went on")

    def _pool(self, work: Work, shared: Any, jobs: list, workers: int) -> Generator[tuple[Any, Any], None, tuple[list, list]]:
        """Run `jobs` in a pool of `workers` processes, yielding (job, output) as they complete; when a
        process dies, return (the runs submitted and unfinished, the runs not yet submitted)."""
        pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                      initargs=(shared,))
        todo, running = list(jobs), dict[cf.Future, Any]()
        try:
            while todo or running:
                while todo and len(running) < workers:
                    job = todo.pop(0)
                    with _child_threads(self.threads):  # processes are spawned as jobs are submitted
                        running[pool.submit(_call_in_worker, work, job)] = job
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    cf.wait(running)  # the others end too, completed or broken
                    done = set(running)
                broken = []
                for future in done:
                    job, error = running.pop(future), future.exception()
                    if isinstance(error, BrokenProcessPool):
                        broken.append(job)
                    else:
                        yield job, error if error is not None else future.result()
                if broken:
                    return broken, todo
            return [], []
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def local_executor(workers: int) -> LocalExecutor | PoolExecutor:
    """This process for one worker, else a pool of `workers` processes."""
    return PoolExecutor(workers) if workers > 1 else LocalExecutor()


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None):
    """The executor named `kind` ('local' or 'ray'); None for the local one without `workers`: the
    runner then picks `automatic_workers` for the runs it has to compute."""
    if workers is not None and workers < 1:
        raise BenchError(f"--workers {workers}: expected a positive integer")
    if kind == "local":
        if address:
            raise BenchError(f"--ray-address {address}: only meaningful with --executor ray")
        return None if workers is None else local_executor(workers)
    if kind == "ray":
        return RayExecutor(address, workers)
    raise BenchError(f"--executor '{kind}': expected one of {', '.join(EXECUTORS)}")
