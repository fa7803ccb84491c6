"""Executors: a process pool and Ray tasks on a local 2-CPU instance give the same results as
in-process runs; Ray receives the data once, through its object store. The pool's size follows the
CPUs, the runs and the runs' estimated peak memory (tests with the memory and the estimates given)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import executors
from bench.cli import main
from bench.errors import BenchError
from bench.executors import LocalExecutor, PoolExecutor, RayExecutor, WorkerDied, make_executor
from bench.ray_executor import connect_error

SWEEP = ["run", "--data", "smoke", "--predictors", "random,train_mean,knn", "--seeds", "0,1"]


def scores(out: Path) -> pd.DataFrame:
    """Every run's per-condition scores, with predictor and seed, in a fixed order."""
    frames = []
    for path in sorted(out.glob("runs/*/seed*/conditions.csv")):
        result = json.loads((path.parent / "result.json").read_text())
        assert result["status"] == "ok", result
        frames.append(pd.read_csv(path).assign(predictor=result["predictor"], seed=result["seed"]))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def local_scores(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("local")
    assert main([*SWEEP, "--out", str(out)]) == 0
    return scores(out)


def test_process_pool_matches_in_process(tmp_path, local_scores):
    assert main([*SWEEP, "--workers", "2", "--out", str(tmp_path)]) == 0
    pd.testing.assert_frame_equal(scores(tmp_path), local_scores)


def test_ray_on_a_local_two_cpu_instance_matches_in_process(tmp_path, local_scores, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(tmp_path))  # a new local instance writes ~/.ray/auth_token when there is none
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value).__name__) or real_put(value, **kw))
    assert main([*SWEEP, "--executor", "ray", "--workers", "2", "--out", str(tmp_path)]) == 0
    assert puts == ["Sweep"]  # the data set went to the object store once, not once per run (6 runs)
    assert not ray.is_initialized()  # the instance it started is shut down
    pd.testing.assert_frame_equal(scores(tmp_path), local_scores)


def test_executor_choice_and_bad_options():
    assert make_executor("local") is None  # the runner picks the workers for what it has to compute
    assert isinstance(make_executor("local", workers=3), PoolExecutor)
    assert isinstance(make_executor("ray", address="auto"), RayExecutor)
    with pytest.raises(BenchError, match="--workers 0"):
        make_executor("local", workers=0)
    with pytest.raises(BenchError, match="--ray-address"):
        make_executor("local", address="auto")
    with pytest.raises(BenchError, match="--executor 'spark'"):
        make_executor("spark")
    for address in ("head", "head:port", "http://head:8265", "head:70000", ":6379"):
        with pytest.raises(BenchError, match=f"--ray-address {address}: expected HOST:PORT"):
            make_executor("ray", address=address)
    assert make_executor("ray", address="ray://10.0.0.5:10001").address == "ray://10.0.0.5:10001"


GIB = 1 << 30
AVAILABLE_24 = executors.MemoryReading(22 * GIB, "available")  # a quiet 24 GiB machine
FULL_BYTES = 650_302 * 2_000 * 4 + 303_068 * 978 * 4  # `--data full`: sc dense + bulk (Benchmark.dense_bytes)


def _peaks(names: list[str], data_bytes: int, seeds: int = 1) -> list[tuple[str, int]]:
    from predictors import registry

    return [(name, registry.memory(name).peak(data_bytes)) for name in names for _ in range(seeds)]


def test_the_pool_is_one_process_per_cpu_and_run_while_the_estimates_fit(monkeypatch):
    """Small estimates (the default data): the CPUs and the runs set the count."""
    monkeypatch.delenv(executors.WORKERS_VARIABLE, raising=False)
    monkeypatch.setattr(executors, "available_cpus", lambda: 8)
    monkeypatch.setattr(executors, "_memory", lambda: executors.MemoryReading(64 * GIB, "available"))
    monkeypatch.setattr(executors, "_resident_bytes", lambda: GIB // 2)
    default = _peaks(["random", "knn", "train_mean", "CPA", "BERT"], 70_000_000, seeds=4)
    assert executors.automatic_workers(default).workers == 8
    assert executors.automatic_workers(default[:3]).workers == 3  # no idle processes
    assert executors.automatic_workers(default[:1]).workers == 1 and isinstance(executors.local_executor(1), LocalExecutor)
    assert executors.automatic_workers([]).workers == 1
    monkeypatch.setattr(executors, "available_cpus", lambda: 2)
    choice = executors.automatic_workers(default)
    assert choice.workers == 2 and "room for" not in choice.why
    assert choice.why.startswith("2 CPUs for 20 runs; estimated peak ")
    monkeypatch.setenv(executors.WORKERS_VARIABLE, "5")
    assert executors.automatic_workers(default) == executors.PoolChoice(5, "BENCH_WORKERS=5")
    monkeypatch.setenv(executors.WORKERS_VARIABLE, "two")
    with pytest.raises(BenchError, match="BENCH_WORKERS=two: expected a positive integer"):
        executors.automatic_workers(default)


def test_the_full_shape_gets_fewer_processes_than_the_default_on_the_same_machine():
    names = ["control_mean", "train_mean", "random", "knn"]
    default = executors.choose_workers(_peaks(names, 70_000_000), 16, AVAILABLE_24, parent=GIB // 2)
    full = executors.choose_workers(_peaks(names, FULL_BYTES), 16, AVAILABLE_24, parent=int(3.7 * GIB))
    assert default.workers == 4  # one per run
    assert full.workers < default.workers
    peaks = sorted((p for _, p in _peaks(names, FULL_BYTES)), reverse=True)
    cap = executors.MEMORY_SHARE * (22 + 3.7) * GIB
    assert 3.7 * GIB + sum(peaks[:full.workers]) <= cap or (full.workers == 1 and "not even one run fits" in full.why)
    assert 3.7 * GIB + sum(peaks[:full.workers + 1]) > cap  # one more would not fit


def test_the_count_is_the_most_runs_whose_largest_peaks_fit_beside_this_process():
    mem = executors.MemoryReading(10 * GIB, "available")  # with a 2 GiB parent: a cap of 0.8 x 12 = 9.6 GiB
    peaks = [("a", 3 * GIB), ("b", 1 * GIB), ("c", 2 * GIB), ("d", 1 * GIB), ("e", 1 * GIB)]
    choice = executors.choose_workers(peaks, 8, mem, parent=2 * GIB)
    assert choice.workers == 4  # the four largest: 2 + 3 + 2 + 1 + 1 = 9 <= 9.6; a fifth run would make 10
    peaks[1] = ("b", int(1.7 * GIB))  # now 2 + 3 + 2 + 1.7 = 8.7, and a fourth run 9.7 > 9.6
    assert executors.choose_workers(peaks, 8, mem, parent=2 * GIB).workers == 3
    assert executors.choose_workers(peaks, 8, mem, parent=0).workers == 4  # 0.8 x 10 = 8: 3 + 2 + 1.7 + 1 = 7.7
    physical = executors.MemoryReading(10 * GIB, "physical")  # the parent is part of it: 0.8 x 10 = 8
    assert executors.choose_workers(peaks, 8, physical, parent=2 * GIB).workers == 2  # 2 + 3 + 2 = 7; + 1.7 = 8.7
    assert "a, the largest" in choice.why and "this process 2.0 GiB" in choice.why
    assert "cap 80% of 10.0 GiB available + this process = 9.6 GiB: room for 4 runs at a time" in choice.why


def test_a_run_that_does_not_fit_beside_this_process_is_computed_in_it():
    choice = executors.choose_workers([("CPA", 15 * GIB), ("knn", GIB)], 16, executors.MemoryReading(16 * GIB, "available"),
                                      parent=4 * GIB)
    assert choice.workers == 1 and isinstance(executors.local_executor(choice.workers), LocalExecutor)
    assert choice.why.endswith("cap 80% of 16.0 GiB available + this process = 16.0 GiB: not even one run fits beside "
                               "this process, so this process computes them (no second copy of the data; it may still "
                               "run out of memory)")
    unknown = executors.choose_workers([("CPA", 15 * GIB)] * 3, 2, None, parent=4 * GIB)
    assert unknown.workers == 2 and unknown.why.endswith("the machine's memory is unknown: not limited by it")


def test_this_machine_s_memory_and_this_process_s_footprint_are_read():
    reading = executors._memory()
    assert reading is not None and reading.bytes > 0
    assert reading.source == ("available" if Path("/proc/meminfo").exists() else "physical")
    assert executors._resident_bytes() > 0


def test_a_plug_in_declares_its_peak_or_gets_the_conservative_default(monkeypatch):
    from predictors import BUILTIN, MEMORY, registry
    from predictors.base import DEFAULT_MEMORY, Memory
    from predictors.knn_bulk import KnnBulk

    assert set(MEMORY) == set(BUILTIN)  # every built-in predictor's peak is measured
    assert all(m.base <= DEFAULT_MEMORY.base and m.factor <= DEFAULT_MEMORY.factor for m in MEMORY.values())
    monkeypatch.setattr(registry, "registrations", lambda: {"mine": ("predictors.knn_bulk:KnnBulk", {})})
    assert registry.memory("mine") == DEFAULT_MEMORY
    monkeypatch.setattr(KnnBulk, "memory", Memory(base=0.5, factor=1.0))
    assert registry.memory("mine").peak(GIB) == int(1.5 * GIB)


def test_bench_run_says_how_it_chose_the_pool(tmp_path, capsys, monkeypatch, smoke):
    from predictors import registry

    monkeypatch.delenv(executors.WORKERS_VARIABLE, raising=False)
    monkeypatch.setattr(executors, "available_cpus", lambda: 1)  # one process: computed here, nothing spawned
    assert main(["run", "--data", "smoke", "--predictors", "random,train_mean", "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pool: ")]
    largest = max(("random", "train_mean"), key=lambda n: registry.memory(n).peak(smoke.dense_bytes))
    estimate = registry.memory(largest).peak(smoke.dense_bytes) / GIB
    assert len(lines) == 1 and lines[0].startswith("pool: in this process: 1 CPU for 2 runs; ")
    assert f"estimated peak {estimate:.1f} GiB per run ({largest}, the largest)" in lines[0]


def _threads_seen(_shared, _job) -> dict:
    import os

    import torch

    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads()}


def test_pool_workers_share_the_cpus_and_keep_a_count_the_user_set(monkeypatch):
    for name in executors.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(executors, "available_cpus", lambda: 4)
    seen = [out for _, out in executors.PoolExecutor(2).map(_threads_seen, None, [0, 1], lambda j: {})]
    assert seen == [{"OMP_NUM_THREADS": "2", "torch": 2}] * 2  # 4 CPUs / 2 processes
    assert "OMP_NUM_THREADS" not in executors.os.environ  # the parent's environment is restored
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen = [out for _, out in executors.PoolExecutor(2).map(_threads_seen, None, [0], lambda j: {})]
    assert seen == [{"OMP_NUM_THREADS": "1", "torch": 1}]


def test_the_default_run_uses_a_pool_when_there_is_more_than_one_run(tmp_path, local_scores, monkeypatch):
    monkeypatch.delenv(executors.WORKERS_VARIABLE, raising=False)
    monkeypatch.setattr(executors, "available_cpus", lambda: 2)
    monkeypatch.setattr(executors, "_memory", lambda: executors.MemoryReading(64 << 30, "available"))
    made = []
    real = executors.PoolExecutor.__init__
    monkeypatch.setattr(executors.PoolExecutor, "__init__", lambda self, workers: made.append(workers) or real(self, workers))
    assert main([*SWEEP, "--out", str(tmp_path)]) == 0
    assert made == [2]
    pd.testing.assert_frame_equal(scores(tmp_path), local_scores)


def test_nothing_listening_at_the_ray_address_is_one_line_in_seconds(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code = main([*SWEEP, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path)])
    assert time.monotonic() - start < 60  # Ray alone retries such an address for about 14 minutes
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [f"bench run: error: --ray-address 127.0.0.1:{port}: nothing listens at 127.0.0.1:{port} "
                      f"(connection refused): start the head there (`ray start --head --port {port}`) or set "
                      "--ray-address to the address it printed"]
    assert not ray.is_initialized()


def _dies_on_one(shared, job):
    if job == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return job * 10


def test_a_dead_worker_fails_its_run_only():
    """A process killed while computing one run fails that run; every other run still completes."""
    out = dict(PoolExecutor(2).map(_dies_on_one, None, [0, 1, 2, 3, 4], lambda j: {}))
    assert isinstance(out.pop(1), WorkerDied)
    assert out == {0: 0, 2: 20, 3: 30, 4: 40}


def test_ray_refusals_name_what_to_set(monkeypatch, tmp_path):
    """The errors Ray 2.60 raises when a cluster wants a token, as bench words them."""
    ray = pytest.importorskip("ray")
    import bench.ray_executor as ex

    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    refused = ("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n  ...\n"
               "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is missing or "
               "incorrect. Note: RAY_AUTH_MODE is currently 'disabled' (not 'token'). Ensure that ...")

    def connection_error(cause: BaseException) -> ConnectionError:
        try:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379") from cause
        except ConnectionError as exc:
            return exc

    monkeypatch.setattr(ex, "_token_mode", lambda: False)
    line = str(connect_error(connection_error(RuntimeError(refused)), "10.0.0.5:6379"))
    assert line.startswith("--ray-address 10.0.0.5:6379: the cluster requires token authentication and RAY_AUTH_MODE "
                           "is not 'token', so none was sent (InvalidAuthToken: Authentication token is missing or "
                           "incorrect): set RAY_AUTH_MODE=token")
    assert "(none is here yet;" in line
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 32)
    assert "(one is in ~/.ray/auth_token;" in str(connect_error(connection_error(RuntimeError(refused)), "h:1"))

    monkeypatch.setattr(ex, "_token_mode", lambda: True)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    assert str(connect_error(connection_error(RuntimeError(refused)), "h:1")).startswith(
        "--ray-address h:1: the cluster rejected the token from RAY_AUTH_TOKEN (InvalidAuthToken: ")
    missing = ray.exceptions.AuthenticationError("Token authentication is enabled but no authentication token was found")
    assert str(connect_error(missing, "h:1")).startswith(
        "--ray-address h:1: RAY_AUTH_MODE=token but no token was found: put the cluster's token")
    timeout = RuntimeError("Failed to connect to GCS. Last connection error: Traceback ...\n"
                           "ray.exceptions.RpcError: Timed out while waiting for GCS to become available.")
    assert str(connect_error(connection_error(timeout), "h:1")) == (
        "--ray-address h:1: cannot connect to the Ray cluster (ray.exceptions.RpcError: Timed out while waiting for "
        "GCS to become available.): set --ray-address to the head node's address as `ray start --head` printed it "
        "(default port 6379)")


def test_a_predictor_asks_for_resources(smoke, monkeypatch):
    from bench.runner import RunConfig, plan
    from predictors.knn_bulk import KnnBulk
    from splits import get_split

    monkeypatch.setattr(KnnBulk, "resources", {"num_cpus": 2, "num_gpus": 1}, raising=False)
    jobs = plan(smoke, get_split("unseen_drugs", smoke.sc, seed=0), RunConfig(predictors=["knn", "random"], seeds=[0, 1]))
    assert [(j.predictor, j.seed, j.resources) for j in jobs] == [
        ("knn", 0, {"num_cpus": 2, "num_gpus": 1}), ("knn", 1, {"num_cpus": 2, "num_gpus": 1}),
        ("random", 0, {"num_cpus": 1}), ("random", 1, {"num_cpus": 1}),
    ]
    assert len({j.key for j in jobs}) == 4
