"""The published leaderboard reproduces: re-running predictors with the published commands at the
published seeds gives the published numbers (tolerances documented in bench/reproduce.py).

By default the repository's `leaderboard/` is checked for the predictors that do not train, at the
first published seed (the whole set takes minutes on the default data); BENCH_FULL_REPRO=1 checks
every published predictor, trainable ones included, at every published seed."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.publish import RESULTS
from bench.reproduce import CHEAP_TOLERANCE, check_published, compare, read_published

PUBLISHED = Path(__file__).resolve().parents[1] / "leaderboard"
FULL = os.environ.get("BENCH_FULL_REPRO") == "1"


@pytest.fixture(scope="module")
def smoke_board(tmp_path_factory) -> Path:
    """A smoke run of two cheap predictors (one seed-dependent) at two seeds, published."""
    root = tmp_path_factory.mktemp("repro")
    run = ["run", "--data", "smoke", "--predictors", "random,train_mean", "--seeds", "1,2", "--out", str(root / "run")]
    assert main(run) == 0
    assert main(["leaderboard", str(root / "run"), "--out", str(root / "lb")]) == 0
    return root / "lb"


def test_published_smoke_numbers_reproduce(smoke_board, tmp_path):
    assert check_published(smoke_board, tmp_path / "again") == []


def test_a_changed_number_is_caught(smoke_board, tmp_path):
    published, _ = read_published(smoke_board)
    row = published.index[(published["predictor"] == "random") & (published["seed"] == 2) & (published["selection"] == "val_selected")][0]
    published.loc[row, "dis_DE50"] += 10 * CHEAP_TOLERANCE
    tampered = tmp_path / "lb"
    tampered.mkdir()
    for f in smoke_board.iterdir():
        if f.is_file():
            (tampered / f.name).write_bytes(f.read_bytes())
    published.to_csv(tampered / RESULTS, index=False)
    problems = check_published(tampered, tmp_path / "again")
    assert len(problems) == 1 and problems[0].startswith("unseen_drugs random 2 val_selected dis_DE50: published")


def test_compare_reports_rows_missing_from_the_fresh_run():
    published = pd.DataFrame({"split": ["s"], "predictor": ["p"], "seed": [0], "selection": ["val_selected"], "status": ["ok"], "mean": [0.5]})
    fresh = published.assign(seed=1)
    assert compare(published, fresh, {"p": 1e-6}) == ["s p 0 val_selected: not in the fresh run"]
    assert compare(published, published.assign(mean=0.5 + 1e-7), {"p": 1e-6}) == []


@pytest.mark.skipif(not (PUBLISHED / RESULTS).exists(), reason="nothing published in leaderboard/ yet")
def test_repository_leaderboard_reproduces(tmp_path):
    published, _ = read_published(PUBLISHED)
    everything = sorted(published.loc[published["status"] == "ok", "predictor"].unique()) if FULL else None
    problems = check_published(PUBLISHED, tmp_path, predictors=everything, first_seed_only=not FULL)
    assert problems == [], "\n".join(problems[:20])
