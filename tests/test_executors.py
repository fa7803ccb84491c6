"""Executors: a process pool and Ray tasks on a local 2-CPU instance give the same results as
in-process runs; Ray receives the data once, through its object store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.executors import LocalExecutor, PoolExecutor, RayExecutor, make_executor

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
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value).__name__) or real_put(value, **kw))
    assert main([*SWEEP, "--executor", "ray", "--workers", "2", "--out", str(tmp_path)]) == 0
    assert puts == ["Sweep"]  # the data set went to the object store once, not once per run (6 runs)
    assert not ray.is_initialized()  # the instance it started is shut down
    pd.testing.assert_frame_equal(scores(tmp_path), local_scores)


def test_executor_choice_and_bad_options():
    assert isinstance(make_executor("local"), LocalExecutor)
    assert isinstance(make_executor("local", workers=3), PoolExecutor)
    assert isinstance(make_executor("ray", address="auto"), RayExecutor)
    with pytest.raises(BenchError, match="--workers 0"):
        make_executor("local", workers=0)
    with pytest.raises(BenchError, match="--ray-address"):
        make_executor("local", address="auto")
    with pytest.raises(BenchError, match="--executor 'spark'"):
        make_executor("spark")


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
