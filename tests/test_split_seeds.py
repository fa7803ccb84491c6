"""Split seeds: `--split-seeds 0,1` runs one folder per hold-out, and the leaderboard reports each
and their pooled ranking with its stability."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.publish import headline_frame, load_boards, split_groups
from bench.stability import mean_kendall_tau, verdict


def test_split_seeds_run_separately_and_publish_pooled(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--data", "smoke", "--predictors", "control_mean,train_mean,knn", "--seeds", "0,1",
            "--split-seeds", "0,1", "--out", str(out)]
    assert main(argv) == 0
    tests = [json.loads((out / f"split-seed{s}" / "run.json").read_text())["split_summary"]["test_drug_names"] for s in (0, 1)]
    assert tests[0] != tests[1]
    board_dir = tmp_path / "lb"
    assert main(["leaderboard", str(out / "split-seed0"), str(out / "split-seed1"), "--out", str(board_dir)]) == 0
    assert {"unseen_drugs.md", "unseen_drugs-seed1.md", "unseen_drugs-pooled.md"} <= {p.name for p in board_dir.glob("*.md")}
    pooled = (board_dir / "unseen_drugs-pooled.md").read_text()
    assert "split seed 0" in pooled and "split seed 1" in pooled and "Across split seeds (0, 1): mean Kendall tau" in pooled
    boards = load_boards([out / "split-seed0", out / "split-seed1"])
    group = split_groups(boards)["unseen_drugs"]
    both = headline_frame(group).set_index("predictor")
    one = headline_frame(group[0]).set_index("predictor")
    assert both.loc["train_mean", "headline"] == pytest.approx(0.0, abs=1e-12)  # the mean baseline is 0
    assert both.loc["knn", "headline"] != one.loc["knn", "headline"]  # the second hold-out counts
    assert "unseen_drugs-pooled" in (board_dir / "README.md").read_text()


def test_repeated_split_seed_is_refused(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["run", "--data", "smoke", "--predictors", "control_mean", "--split-seeds", "0,0", "--out", str(out)]) == 2
    assert "--split-seeds '0,0': a seed is repeated" in capsys.readouterr().err and not out.exists()


def test_kendall_tau_and_verdict():
    a = pd.Series({"x": 3.0, "y": 2.0, "z": 1.0})
    assert mean_kendall_tau([a, a]) == (1.0, 1)
    assert mean_kendall_tau([a, -a])[0] == -1.0
    pairs = [{"above": "x", "below": "y", "low": 0.1, "high": 0.3}, {"above": "y", "below": "z", "low": -0.2, "high": 0.1}]
    assert verdict(pairs) == "x > y ≈ z"
