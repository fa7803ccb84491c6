"""The CLI end to end on the smoke data: run, leaderboard, list, data, and one-line errors."""

from __future__ import annotations

import json

import anndata as ad
import pandas as pd
import pytest

from bench.cli import main

CHEAP = "random,knn,control_mean,train_mean,oracle"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "--data", "smoke", "--predictors", CHEAP, "--seeds", "0,1", "--out", str(out)]) == 0
    return out


def test_run_writes_results_for_every_predictor_and_seed(run_dir):
    for name in CHEAP.split(","):
        for seed in (0, 1):
            result = json.loads((run_dir / "runs" / name / f"seed{seed}" / "result.json").read_text())
            assert result["status"] == "ok", result
            assert 0.0 < result["val_selected"]["mean"] <= 1.0
            conditions = pd.read_csv(run_dir / "runs" / name / f"seed{seed}" / "conditions.csv")
            assert {"val_selected", "test_selected"} == set(conditions["selection"])
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["split_summary"]["test_conditions"] > 0
    board = (run_dir / "leaderboard.md").read_text()
    for name in CHEAP.split(","):
        assert f"| {name}" in board


def test_leaderboard_command_publishes_markdown(run_dir, tmp_path, capsys):
    assert main(["leaderboard", str(run_dir), "--out", str(tmp_path / "lb")]) == 0
    text = (tmp_path / "lb" / "unseen_drugs.md").read_text()
    assert "mean_DE50" in text and "dis_DE10" in text and "knn" in text


def test_list_names_predictors_splits_and_metrics(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("random", "knn", "control_mean", "train_mean", "unseen_drugs", "dis_DE50"):
        assert word in out


def test_data_command_writes_readable_h5ad(tmp_path):
    assert main(["data", "--data", "smoke", "--out", str(tmp_path)]) == 0
    sc = ad.read_h5ad(tmp_path / "sc.h5ad")
    bulk = ad.read_h5ad(tmp_path / "bulk.h5ad")
    assert {"drug", "cell_type", "dose"} <= set(sc.obs.columns) and bulk.n_obs > 0
    assert "bench_truth" in sc.uns


def test_data_stats_prints_the_presets_table_statistics(tmp_path, capsys):
    """`bench data --stats`: the presets table's statistics of the data set instead of files; the same
    measured values when the written files are read back with --sc/--bulk, and no model statistics
    without a generating truth."""
    def stats(argv: list[str]) -> dict[str, float]:
        assert main(["data", *argv, "--stats"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()[1:]
        return {name: float(value.replace(",", "")) for name, value in (line.split() for line in lines)}

    embedded = stats(["--data", "smoke", "--out", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()
    assert {"zero_fraction", "cells_per_condition_median", "bulk_pairs_with_1_or_2_doses", "inert_fraction"} <= set(embedded)
    assert embedded["cells_per_condition_median"] == 12 and embedded["bulk_pairs_with_1_or_2_doses"] == 0  # easy: 6 doses everywhere
    assert main(["data", "--data", "smoke", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    sc = ad.read_h5ad(tmp_path / "sc.h5ad")
    del sc.uns["bench_truth"]
    sc.write_h5ad(tmp_path / "files.h5ad")
    files = stats(["--sc", str(tmp_path / "files.h5ad"), "--bulk", str(tmp_path / "bulk.h5ad")])
    assert "inert_fraction" not in files and files == pytest.approx({k: embedded[k] for k in files}, abs=1e-3, nan_ok=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--data", "smoke", "--predictors", "knnn"], "unknown predictor 'knnn' (did you mean 'knn'?)"),
        (["run", "--data", "smoke", "--split", "unseen"], "unknown split 'unseen'"),
        (["run", "--data", "smoke", "--seeds", "a,b"], "--seeds 'a,b': expected comma-separated integers"),
        (["leaderboard", "/nonexistent/run"], "run folder not found"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys, tmp_path):
    argv = argv + (["--out", str(tmp_path / "o")] if argv[0] == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_set_changes_one_predictor_option_and_is_recorded(tmp_path, capsys):
    import json

    out = tmp_path / "out"
    base = ["run", "--data", "smoke", "--predictors", "random", "--out", str(out)]
    assert main([*base, "--set", "random.k=2"]) == 0
    result = json.loads((out / "runs/random/seed0/result.json").read_text())
    assert result["options"]["k"] == 2
    key = result["run_key"]
    assert main(base) == 0  # the default option is another run
    again = json.loads((out / "runs/random/seed0/result.json").read_text())
    assert again["options"]["k"] == 5 and again["run_key"] != key
    capsys.readouterr()
    for bad, message in (("random.k", "expected NAME.OPTION=VALUE"), ("knn.k=2", "predictor 'knn' is not among --predictors"),
                         ("random.kk=2", "random has no option 'kk' (did you mean 'k'?)")):
        assert main([*base, "--set", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_list_shows_a_predictors_options(capsys):
    assert main(["list", "BERT_mlp"]) == 0
    out = capsys.readouterr().out
    assert "decoder = 'mlp'" in out and "energy_weight = 0.05" in out and "search space" in out
