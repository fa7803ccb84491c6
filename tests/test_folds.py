"""K-fold hold-outs: every drug tested exactly once, pooled into one leaderboard with the detectable
difference each page states (its power: tests/test_headline.py)."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.data.benchmark import Benchmark, load_default
from bench.errors import BenchError
from splits import benchmark_split
from splits.base import TEST, TRAIN, VAL
from splits.unseen_drug_families import drug_groups


@pytest.fixture(scope="module")
def data() -> Benchmark:
    return load_default("smoke")


@pytest.mark.parametrize("name", ["unseen_drugs", "unseen_drug_families"])
def test_every_drug_is_tested_exactly_once(data, name):
    obs = data.sc.obs
    tested = []
    for fold in range(3):
        split = benchmark_split(data, name, seed=4, fold=fold, folds=3)
        test, val, train = (set(split.drugs(obs, r)) for r in (TEST, VAL, TRAIN))
        assert test and val and train
        assert not test & val and not test & train and not val & train
        assert split.summary(obs)["fold"] == fold and split.summary(obs)["folds"] == 3
        tested += sorted(test)
    drugs = sorted(set(obs["drug"].astype(str)) - {data.control})
    assert sorted(tested) == drugs


def test_family_folds_keep_families_whole(data):
    groups = drug_groups(data.sc, data.control)
    for fold in range(3):
        split = benchmark_split(data, "unseen_drug_families", seed=1, fold=fold, folds=3)
        train_families = {groups[d] for d in split.drugs(data.sc.obs, TRAIN)}
        assert not {groups[d] for d in split.drugs(data.sc.obs, TEST)} & train_families


def test_folds_hold_out_only_drugs_with_bulk(data):
    dropped = sorted(set(data.sc.obs["drug"].astype(str)) - {data.control})[:3]
    bulk = data.bulk[~data.bulk.obs["drug"].astype(str).isin(dropped)].copy()
    partial = Benchmark(sc=data.sc, bulk=bulk, name="partial")
    tested = set()
    for fold in range(3):
        split = benchmark_split(partial, "unseen_drugs", fold=fold, folds=3)
        tested |= set(split.drugs(data.sc.obs, TEST)) | set(split.drugs(data.sc.obs, VAL))
        assert not set(dropped) & (set(split.drugs(data.sc.obs, TEST)) | set(split.drugs(data.sc.obs, VAL)))
    assert set(dropped) & tested == set()


def test_fold_requests_are_checked(data):
    with pytest.raises(BenchError, match="at least 2 folds"):
        benchmark_split(data, "unseen_drugs", fold=0, folds=1)
    with pytest.raises(BenchError, match="more than the 12 drugs"):
        benchmark_split(data, "unseen_drugs", fold=0, folds=13)
    with pytest.raises(BenchError, match="fold 3 is outside 0..2"):
        benchmark_split(data, "unseen_drugs", fold=3, folds=3)
    with pytest.raises(BenchError, match="stored split"):
        benchmark_split(data, "unseen_drugs", split_column="split", fold=0, folds=3)


def test_cli_fold_options_are_checked(tmp_path, capsys):
    assert main(["run", "--data", "smoke", "--predictors", "knn", "--fold", "1", "--out", str(tmp_path)]) == 2
    assert "--fold 1: expected --folds K" in capsys.readouterr().err
    assert main(["run", "--data", "smoke", "--predictors", "knn", "--folds", "1", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("**/result.json"))


def test_folds_run_and_publish_pooled(tmp_path):
    out, board = tmp_path / "run", tmp_path / "board"
    argv = ["run", "--data", "smoke", "--predictors", "knn,train_mean,control_mean", "--folds", "3",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    folders = [out / f"fold{k}" for k in range(3)]
    assert all((f / "run.json").exists() for f in folders)
    clusters = json.loads((folders[0] / "run.json").read_text())["drug_clusters"]
    assert len(clusters) == 12 and len(set(clusters.values())) == 4  # the smoke data's 4 families, as scaffolds
    assert main(["leaderboard", *map(str, folders), "--out", str(board)]) == 0
    pooled = (board / "unseen_drugs-pooled.md").read_text()
    assert "pooled over 3 folds (every held-out drug tested once)" in pooled
    assert "over 12 held-out drugs in 4 cluster(s)" in pooled  # every smoke drug, once
    assert "rest on 4 cluster(s) of related drugs (Bemis-Murcko scaffolds; 12 held-out drugs)" in pooled
    assert "cannot be seen here" in pooled or "detects with 80% power" in pooled
    assert "Across model seeds (0, every fold pooled): mean Kendall tau not available (one seed)" in pooled
    for folder in folders:  # run folders written before run.json recorded the clusters: one cluster per drug
        meta = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "drug_clusters"}))
    assert main(["leaderboard", *map(str, folders), "--out", str(board)]) == 0
    pooled = (board / "unseen_drugs-pooled.md").read_text()
    assert "rest on 12 cluster(s) of related drugs (one cluster per drug: these run folders record no drug clusters" in pooled
    assert (board / "plots" / "unseen_drugs-pooled_forest.png").stat().st_size > 1000
    overview = (board / "README.md").read_text()
    assert "[fold 2 of 3](unseen_drugs-fold1.md)" in overview
    assert overview.index("plots/unseen_drugs-pooled_forest.png") < overview.index("| rank |")


def test_pooled_label_says_when_folds_are_missing():
    from bench.board import Board
    from bench.pages import pooled_label

    def board(fold: int) -> Board:
        return Board(f"unseen_drugs-fold{fold}", metas=[{"split_summary": {"seed": 0, "fold": fold, "folds": 5}}])

    assert pooled_label([board(k) for k in range(5)]) == "5 folds (every held-out drug tested once)"
    assert pooled_label([board(0), board(1)]) == "folds 1, 2 of 5 (the other folds' drugs untested)"
