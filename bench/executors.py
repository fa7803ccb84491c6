"""Executors: where the runs of a sweep are computed. `local` runs them in this process (or a
process pool with `workers`), `ray` submits each as a Ray task on a local instance or a cluster.

By default (`workers` None) the local executor chooses: a pool of one process per available CPU
(at most one per run and per MEMORY_PER_WORKER of memory, each with an equal share of the CPUs as
its thread count), or this process when that is one worker. `BENCH_WORKERS` sets the default.

Every executor takes a picklable `work(shared, job)` function, the data every run shares (shipped
to each worker process once, or put in the Ray object store once) and the jobs, and yields
`(job, output)` as runs complete; an infrastructure failure (a dead worker) comes back as the
exception instead of an output, so the driver can record it and go on. A cluster that cannot be
reached or refuses this process (token authentication) stops the sweep with one `BenchError` line.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.errors import BenchError

Work = Callable[[Any, Any], Any]
Resources = Callable[[Any], dict]

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
MEMORY_PER_WORKER = 3 << 30  # bytes: a worker's peak at the default data is ~1.5 GiB (torch, cpa-tools and the data)
WORKERS_VARIABLE = "BENCH_WORKERS"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container or `taskset` limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def automatic_workers(n_jobs: int) -> int:
    """Processes for `n_jobs` runs when `--workers` is not given: `BENCH_WORKERS` when set, else one
    per available CPU, at most one per run and one per MEMORY_PER_WORKER of memory."""
    given = os.environ.get(WORKERS_VARIABLE)
    if given:
        if not given.isdigit() or int(given) < 1:
            raise BenchError(f"{WORKERS_VARIABLE}={given}: expected a positive integer")
        return int(given)
    memory = _memory_bytes()
    by_memory = max(1, memory // MEMORY_PER_WORKER) if memory else available_cpus()
    return max(1, min(available_cpus(), n_jobs, by_memory))


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


class PoolExecutor:
    """A pool of `workers` fresh (spawned) processes; the shared data is sent once to each. Each
    process gets an equal share of the available CPUs as its thread count."""

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
        pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                      initargs=(shared,))
        try:
            with _child_threads(self.threads):  # processes are spawned as jobs are submitted
                futures = {pool.submit(_call_in_worker, work, job): job for job in jobs}
            for future in cf.as_completed(futures):
                error = future.exception()
                yield futures[future], error if error is not None else future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _call_in_ray(work: Work, shared: Any, job: Any) -> Any:
    return work(shared, job)


CONNECT_TIMEOUT_S = 5.0  # for the TCP check of --ray-address before Ray's own (much longer) retries
TOKEN_PLACES = "~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
TOKEN_HINT = "`ray get-auth-token` on the head node prints it"


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT or ray://HOST:PORT address; None for 'auto' and 'local', which
    Ray resolves itself. A malformed address is a `BenchError`."""
    if address in ("auto", "local"):
        return None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "://" in rest:
        raise BenchError(f"--ray-address {address}: expected HOST:PORT of the head node (as `ray start --head` "
                         "prints it, e.g. 10.0.0.5:6379), ray://HOST:PORT (Ray Client) or auto")
    return host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, with one line, when nothing answers at `address` (Ray itself retries for minutes)."""
    target = split_address(address)
    if target is None:
        return
    host, port = target
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as exc:
        raise BenchError(f"--ray-address {address}: cannot resolve host '{host}' ({exc.strerror}): "
                         "set --ray-address to the head node's HOST:PORT") from None
    except ConnectionRefusedError:
        flag = "--ray-client-server-port" if address.startswith("ray://") else "--port"
        raise BenchError(f"--ray-address {address}: nothing listens at {host}:{port} (connection refused): start the "
                         f"head there (`ray start --head {flag} {port}`) or set --ray-address to the address it "
                         "printed") from None
    except TimeoutError:
        raise BenchError(f"--ray-address {address}: no answer from {host}:{port} within {timeout:g} s: check the "
                         "host, the port and any firewall between here and the head node") from None
    except OSError as exc:
        raise BenchError(f"--ray-address {address}: cannot reach {host}:{port} ({exc.strerror or exc}): set "
                         "--ray-address to the head node's HOST:PORT") from None


def _causes(exc: BaseException | None) -> list[BaseException]:
    """The exception and the ones it was raised from, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _token_mode() -> bool:
    """Whether this process's Ray sends an authentication token (RAY_AUTH_MODE=token, as Ray read it)."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode

        return get_authentication_mode() == AuthenticationMode.TOKEN
    except (ImportError, AttributeError):
        return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def _token_source() -> str | None:
    """Where Ray would read this process's token from, in Ray's order; None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    if (Path.home() / ".ray" / "auth_token").is_file():
        return "~/.ray/auth_token"
    return None


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def connect_error(exc: BaseException, address: str | None) -> BenchError:
    """One line saying why Ray could not connect to (or start) a cluster, and what to set."""
    if address is None:
        return BenchError(f"--executor ray: could not start a local Ray instance ({_last_line(_causes(exc)[-1])}); "
                          "connect to a running cluster with --ray-address HOST:PORT instead")
    chain = _causes(exc)
    text = "\n".join(str(e) for e in chain)
    if "no authentication token was found" in text:
        return BenchError(f"--ray-address {address}: RAY_AUTH_MODE=token but no token was found: put the cluster's "
                          f"token ({TOKEN_HINT}) in {TOKEN_PLACES}")
    rejected = re.search(r"InvalidAuthToken[^.\n]*", text)
    if rejected or any(type(e).__name__ == "AuthenticationError" for e in chain):
        cause = rejected.group(0) if rejected else _last_line(chain[-1])
        source = _token_source()
        if _token_mode():
            return BenchError(f"--ray-address {address}: the cluster rejected the token from {source or 'nowhere'} "
                              f"({cause}): use the cluster's token ({TOKEN_HINT}) in {TOKEN_PLACES}")
        found = f"one is in {source}" if source else "none is here yet"
        return BenchError(f"--ray-address {address}: the cluster requires token authentication and RAY_AUTH_MODE is "
                          f"not 'token', so none was sent ({cause}): set RAY_AUTH_MODE=token, with the cluster's "
                          f"token in {TOKEN_PLACES} ({found}; {TOKEN_HINT})")
    if "ray[client]" in text:
        return BenchError(f"--ray-address {address}: ray:// addresses need Ray Client (pip install 'ray[client]'); "
                          "or set --ray-address to the head node's HOST:PORT as `ray start --head` printed it")
    if "Could not find any running Ray instance" in text:
        return BenchError(f"--ray-address {address}: no running Ray cluster found on this machine: start one "
                          "(`ray start --head`) or set --ray-address to its HOST:PORT")
    return BenchError(f"--ray-address {address}: cannot connect to the Ray cluster ({_last_line(chain[-1])}): set "
                      "--ray-address to the head node's address as `ray start --head` printed it (default port 6379)")


class RayExecutor:
    """One Ray task per run with the resources the run asks for. Connects to `address` when given,
    otherwise to an already initialised Ray, otherwise starts a local instance (`workers` CPUs) that
    it shuts down when the sweep ends; a cluster it connected to is only disconnected from."""

    in_process = False
    where = "as Ray tasks"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        if address is not None:
            split_address(address)  # a malformed address fails before any data is loaded
        self.address, self.workers = address, workers

    def _connect(self, ray: Any) -> None:
        """ray.init for the cluster at `address`, or a new local instance ('local': never one found
        through RAY_ADDRESS or a `ray start` on this machine). Failures become one `BenchError` line."""
        if self.address:
            check_reachable(self.address)
            options: dict = {"address": self.address}
        else:
            options = {"address": "local", "num_cpus": self.workers, "include_dashboard": False}
        auth_mode = os.environ.get("RAY_AUTH_MODE")
        try:
            ray.init(log_to_driver=False, **options)
        except BaseException as exc:
            ray.shutdown()  # whatever a failed or interrupted start left behind
            if isinstance(exc, Exception):  # Ray raises ConnectionError, RuntimeError and its own errors
                raise connect_error(exc, self.address) from None
            raise
        finally:
            if not self.address and auth_mode is None:
                # a new local instance sets RAY_AUTH_MODE=token in this process; don't pass it on
                os.environ.pop("RAY_AUTH_MODE", None)

    def map(self, work: Work, shared: Any, jobs: list, resources: Resources) -> Iterator[tuple[Any, Any]]:
        try:
            import ray
        except ImportError:
            raise BenchError("--executor ray: the 'ray' package is not installed (pip install 'ray[default]')") from None
        if not jobs:
            return
        started = not ray.is_initialized()
        if started:
            self._connect(ray)
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
                ray.shutdown()  # stops the local instance it started; only disconnects from a cluster


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
