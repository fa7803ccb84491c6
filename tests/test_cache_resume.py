"""Keyed runs: an interrupted sweep resumes, finished runs are reused (not recomputed), the final
results equal an uninterrupted sweep's, and a changed configuration or --force recomputes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cache import data_fingerprints, finished, run_key, split_fingerprint
from bench.cli import main
from predictors.floors import TrainMeanShift
from splits import get_split

SWEEP = ["run", "--data", "smoke", "--predictors", "random,control_mean,train_mean,knn", "--seeds", "0,1"]
TIMINGS = {"fit_seconds", "seconds_per_epoch", "seconds", "eval_seconds"}


def run_files(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.glob("runs/*/seed*/*")) if p.is_file()}


def comparable(path: Path):
    """A run file without its wall-clock timings."""
    if path.suffix == ".json":
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame if c in TIMINGS])


def test_interrupted_sweep_resumes_reuses_finished_runs_and_matches_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    def interrupted(self, task):
        raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        m.setattr(TrainMeanShift, "fit", interrupted)
        assert main([*SWEEP, "--out", str(out)]) == 130  # stopped at train_mean seed 0
    first = run_files(out)
    assert {p.split("/")[1] for p in first} == {"random", "control_mean"}
    assert not list(out.glob("runs/train_mean/*"))  # nothing half-written
    stamps = {name: p.stat().st_mtime_ns for name, p in first.items()}
    capsys.readouterr()

    assert main([*SWEEP, "--out", str(out)]) == 0
    assert "runs: 4 reused (finished, same key), 4 to compute" in capsys.readouterr().err
    assert {name: p.stat().st_mtime_ns for name, p in first.items()} == stamps  # reused, not rewritten

    fresh = tmp_path / "uninterrupted"
    assert main([*SWEEP, "--out", str(fresh)]) == 0
    resumed, whole = run_files(out), run_files(fresh)
    assert sorted(resumed) == sorted(whole) and len(whole) >= 16
    for name in whole:
        a, b = comparable(resumed[name]), comparable(whole[name])
        if isinstance(a, dict):
            assert a == b, name
        else:
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=name)


def test_force_and_changed_configuration_recompute(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--data", "smoke", "--predictors", "random,control_mean", "--out", str(out)]
    assert main(base) == 0
    result = out / "runs/random/seed0/result.json"
    key = json.loads(result.read_text())["run_key"]
    capsys.readouterr()
    assert main([*base, "--force"]) == 0
    assert "0 reused" in capsys.readouterr().err
    assert json.loads(result.read_text())["run_key"] == key  # same configuration, same key
    assert main([*base, "--split-seed", "1"]) == 0  # another hold-out: every run is new
    assert "0 reused (finished, same key), 2 to compute" in capsys.readouterr().err
    assert json.loads(result.read_text())["run_key"] != key


def test_failed_runs_are_retried(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--data", "smoke", "--predictors", "control_mean", "--out", str(out)]
    assert main(base) == 0
    path = out / "runs/control_mean/seed0/result.json"
    failed = {**json.loads(path.read_text()), "status": "failed", "error": "RuntimeError: earlier failure"}
    path.write_text(json.dumps(failed))
    capsys.readouterr()
    assert main(base) == 0
    assert "0 reused (finished, same key), 1 to compute" in capsys.readouterr().err
    assert json.loads(path.read_text())["status"] == "ok"


def test_run_key_depends_on_every_input(smoke):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    data, split_fp = data_fingerprints(smoke), split_fingerprint(split)
    args = dict(predictor="knn", options={"k": 3}, split=split_fp, seed=0, max_epochs=None, metrics=["mean", "dis"], data=data)
    key = run_key(**args)
    assert run_key(**args) == key
    assert run_key(**{**args, "metrics": ["dis", "mean"]}) == key  # order of metrics is irrelevant
    changed = [
        {"predictor": "random"}, {"options": {"k": 4}}, {"seed": 1}, {"max_epochs": 2}, {"metrics": ["mean"]},
        {"split": split_fingerprint(get_split("unseen_drugs", smoke.sc, seed=1))},
        {"data": {**data, "bulk": "another"}},
    ]
    assert len({key, *(run_key(**{**args, **c}) for c in changed)}) == len(changed) + 1
    sub = smoke.sc[: smoke.sc.n_obs - 1]
    assert data_fingerprints(type(smoke)(sub, smoke.bulk, "cut"))["sc"] != data["sc"]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"run_key": "other", "status": "ok"})])
def test_unreadable_or_foreign_results_are_not_reused(tmp_path, content):
    path = tmp_path / "runs/knn/seed0/result.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert finished(tmp_path, "knn", 0, "mykey") is None
    path.write_text(json.dumps({"run_key": "mykey", "status": "ok", "x": 1}))
    assert finished(tmp_path, "knn", 0, "mykey")["x"] == 1


def test_a_killed_sweep_leaves_only_whole_runs_and_resumes(tmp_path):
    """SIGKILL while the trainable predictor trains: the finished runs survive intact and are reused."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    # Enough cVAE epochs that the kill lands while it trains, even on a loaded machine.
    cmd = [sys.executable, "-m", "bench.cli", "run", "--data", "smoke", "--predictors", "random,knn,cVAE",
           "--epochs", "60", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last_quick = out / "runs/knn/seed0/result.json"
    deadline = time.monotonic() + 120
    while not last_quick.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last_quick.exists() and not (out / "runs/cVAE/seed0").exists(), "killed too late or too early"
    for path in out.glob("runs/*/seed*/result.json"):
        assert json.loads(path.read_text())["status"] == "ok"  # every visible run is whole
    resumed = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "runs: 2 reused (finished, same key), 1 to compute" in resumed.stderr
    assert len(list(out.glob("runs/*/seed0/result.json"))) == 3


def test_a_run_scored_under_an_older_scoring_version_is_recomputed(tmp_path, capsys):
    from bench.cache import SCORING_VERSION

    out = tmp_path / "out"
    argv = ["run", "--data", "smoke", "--predictors", "control_mean,train_mean", "--out", str(out)]
    assert main(argv) == 0
    path = out / "runs/train_mean/seed0/result.json"
    result = json.loads(path.read_text())
    assert result["scoring_version"] == SCORING_VERSION
    old = {**result, "scoring_version": SCORING_VERSION - 1, "run_key": "0" * 16}  # as an older bench wrote it
    path.write_text(json.dumps(old))
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "runs: 1 reused (finished, same key), 1 to compute" in err
    assert f"train_mean (seed 0): recomputed: it was scored under scoring version {SCORING_VERSION - 1}, now {SCORING_VERSION}" in err
    assert json.loads(path.read_text())["scoring_version"] == SCORING_VERSION
