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


def tampered_copy(board: Path, dest: Path, seed: int) -> Path:
    """A copy of `board` whose random predictor's val_selected dis_DE50 at `seed` is off by 10 tolerances."""
    published, _ = read_published(board)
    row = published.index[(published["predictor"] == "random") & (published["seed"] == seed) & (published["selection"] == "val_selected")][0]
    published.loc[row, "dis_DE50"] += 10 * CHEAP_TOLERANCE
    dest.mkdir()
    for f in board.iterdir():
        if f.is_file():
            (dest / f.name).write_bytes(f.read_bytes())
    published.to_csv(dest / RESULTS, index=False)
    return dest


def test_published_smoke_numbers_reproduce(smoke_board, tmp_path):
    outcome = check_published(smoke_board, tmp_path / "again", main)
    assert outcome.problems == [] and outcome.compared > 0


def test_a_changed_number_is_caught(smoke_board, tmp_path):
    problems = check_published(tampered_copy(smoke_board, tmp_path / "lb", seed=2), tmp_path / "again", main).problems
    assert len(problems) == 1 and problems[0].startswith("unseen_drugs random 2 val_selected dis_DE50: published")


def test_check_option_reproduces_the_board_and_fails_a_tampered_copy(smoke_board, tmp_path, capsys):
    """`bench leaderboard --check`: the cheap predictors at the first seed (1 here), exit 0 and the count
    compared; a number changed at that seed is one line on stdout and exit 1; --all reaches seed 2."""
    work = tmp_path / "work"
    assert main(["leaderboard", "--check", str(smoke_board), "--work", str(work)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "published numbers compared" in out[0] and out[0].endswith("all reproduce")
    assert sorted(p.name for p in (work / "split-0" / "run-0" / "runs" / "random").iterdir()) == ["seed1"]
    assert main(["leaderboard", "--check", str(tampered_copy(smoke_board, tmp_path / "lb1", seed=1))]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("unseen_drugs random 1 val_selected dis_DE50: published") and "1 mismatch" in out[1]
    assert main(["leaderboard", "--check", str(tampered_copy(smoke_board, tmp_path / "lb2", seed=2)), "--all"]) == 1
    assert capsys.readouterr().out.startswith("unseen_drugs random 2 val_selected dis_DE50: published")


def test_check_option_errors_are_one_line(smoke_board, tmp_path, capsys):
    for argv, message in ((["--check", str(tmp_path)], "results.csv: not found"),
                          (["--check", str(smoke_board), str(tmp_path)], "RUN_DIR, --out and --table1 are for publishing"),
                          (["--all"], "--all, --work and --allow-ray go with --check FOLDER")):
        assert main(["leaderboard", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_compare_reports_rows_missing_from_the_fresh_run():
    published = pd.DataFrame({"split": ["s"], "predictor": ["p"], "seed": [0], "selection": ["val_selected"], "status": ["ok"], "mean": [0.5]})
    fresh = published.assign(seed=1)
    outcome = compare(published, fresh, {"p": 1e-6})
    assert outcome.problems == ["s p 0 val_selected: not in the fresh run"] and outcome.compared == 0
    outcome = compare(published, published.assign(mean=0.5 + 1e-7), {"p": 1e-6})
    assert outcome.problems == [] and outcome.compared == 1


@pytest.mark.skipif(not (PUBLISHED / RESULTS).exists(), reason="nothing published in leaderboard/ yet")
def test_repository_leaderboard_reproduces(tmp_path):
    outcome = check_published(PUBLISHED, tmp_path, main, trainable=FULL, first_seed_only=not FULL)
    assert outcome.problems == [] and outcome.compared > 0, "\n".join(outcome.problems[:20])
