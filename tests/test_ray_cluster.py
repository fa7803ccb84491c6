"""A real two-node Ray cluster on this machine, started with the `ray` CLI: bench run with
--ray-address gives the same per-condition scores as in process, and a cluster that requires token
authentication refuses a bench without RAY_AUTH_MODE=token with one line (exit code 2).

The cluster reproduces how token authentication gets switched on unasked: a token left in
~/.ray/auth_token (any earlier local `ray.init()` writes one) makes `ray start --head` require it,
while a worker node or a driver given an explicit address sends it only with RAY_AUTH_MODE=token.
Ray reads RAY_AUTH_MODE once per process, so the runs against the cluster are fresh `bench`
processes with their own environment, as a user would start them; HOME is a temporary folder so the
real ~/.ray is never touched."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from test_executors import scores

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "--data", "smoke", "--predictors", "train_mean,random", "--seeds", "0"]


def free_ports(n: int) -> list[int]:
    """`n` TCP ports nothing listens on right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def live_members(group: int) -> list[int]:
    """Processes of a process group that have not exited (zombies left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def stop_group(group: int, grace: float = 2.0) -> None:
    """SIGTERM every process of a `ray start` process group, SIGKILL what is left after `grace` s
    (the GCS server and raylets take about 10 s to heed SIGTERM; a throwaway cluster need not wait)."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while live_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Cluster:
    """Nodes started with `ray start` in one short temp dir; each node's processes form their own
    process group (new session), which is what `stop` ends: never `ray stop`, which ends every
    Ray process on the machine."""

    def __init__(self, root: Path) -> None:
        self.root, self.temp = root, root / "ray"  # short: Ray's socket paths live under it
        self.home = root / "home"
        (self.home / ".ray").mkdir(parents=True)
        (self.home / ".ray" / "auth_token").write_text(secrets.token_hex(16))  # as a local ray.init() leaves it
        self.groups: list[int] = []
        self.address = ""

    def env(self, **extra: str) -> dict[str, str]:
        drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        return {**env, "HOME": str(self.home), **extra}

    def ray_start(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        agent_port, = free_ports(1)
        command = [shutil.which("ray"), "start", *args, "--num-cpus", "1", "--temp-dir", str(self.temp),
                   "--disable-usage-stats", "--object-store-memory", str(100 * 2**20),
                   "--min-worker-port", "0", "--max-worker-port", "0", "--dashboard-agent-listen-port", str(agent_port)]
        proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.groups.append(proc.pid)
        out, _ = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(command, proc.returncode, out)

    def start(self) -> None:
        port, dashboard_port = free_ports(2)
        head = self.ray_start(["--head", "--port", str(port), "--include-dashboard", "false", "--dashboard-port",
                               str(dashboard_port)], self.env())
        assert head.returncode == 0, head.stdout[-2000:]
        assert "Token authentication is enabled" in head.stdout  # switched on by the token left in ~/.ray
        self.address = (self.temp / "ray_current_cluster").read_text().strip()
        worker = self.ray_start(["--address", self.address], self.env(RAY_AUTH_MODE="token"))
        assert worker.returncode == 0, worker.stdout[-2000:]

    def stop(self) -> None:
        for group in self.groups:
            stop_group(group)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command line is not installed")
    pytest.importorskip("ray")
    if not Path("/proc").is_dir():
        pytest.skip("stopping the cluster's processes needs /proc")
    node = Cluster(Path(tempfile.mkdtemp(prefix="bray", dir="/tmp")))
    try:
        node.start()
        yield node
    finally:
        node.stop()
        assert not any(live_members(group) for group in node.groups), "Ray processes outlived the cluster"


def bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`bench` in a fresh process (Ray reads RAY_AUTH_MODE once per process)."""
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_two_node_cluster_gives_the_in_process_scores(cluster, tmp_path):
    out = tmp_path / "ray"
    run = bench([*RUN, "--executor", "ray", "--ray-address", cluster.address, "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache-ray")], cluster.env(RAY_AUTH_MODE="token"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert main([*RUN, "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "cache-local")]) == 0
    pd.testing.assert_frame_equal(scores(out), scores(tmp_path / "local"))


@pytest.mark.slow
def test_token_cluster_refuses_a_bench_without_token_mode_in_one_line(cluster, tmp_path):
    # 2 connection attempts instead of Ray's 20 (one a second): the refusal is the same, only sooner
    env = cluster.env(RAY_gcs_server_port_wait_time_s="2")
    run = bench([*RUN, "--executor", "ray", "--ray-address", cluster.address, "--out", str(tmp_path)], env)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("bench run: error:")]
    assert errors == [f"bench run: error: --ray-address {cluster.address}: the cluster requires token authentication "
                      "and RAY_AUTH_MODE is not 'token', so none was sent (InvalidAuthToken: Authentication token "
                      "is missing or incorrect): set RAY_AUTH_MODE=token, with the cluster's token in "
                      "~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (one is in ~/.ray/auth_token; "
                      "`ray get-auth-token` on the head node prints it)"]
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("runs/*/seed*"))  # no run was recorded as failed: the sweep never started
