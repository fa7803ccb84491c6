"""The Ray executor: each run of a sweep as a Ray task on a local instance or a cluster. A cluster
that cannot be reached or refuses this process (token authentication) stops the sweep with one
`BenchError` line; a Ray task that fails comes back as its exception, so the driver records it and
goes on (bench/executors.py)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.errors import BenchError

Work = Callable[[Any, Any], Any]  # work(shared, job) -> the job's output
Resources = Callable[[Any], dict]  # job -> the resources it asks for


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
