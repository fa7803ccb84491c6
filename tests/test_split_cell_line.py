"""`unseen_drug_cell_line`: (drug, cell line) pairs held out while the drug stays in training in
another cell line; folds partition the pairs; the leak check of every split catches a crafted leak."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.benchmark import Benchmark
from bench.errors import BenchError
from bench.schema import CELL_TYPE, DRUG
from predictors import registry
from predictors.base import Task
from splits import benchmark_split, get_split, split_names
from splits.base import TEST, TRAIN, VAL, Split
from splits.unseen_drug_cell_line import NAME, candidates


def pairs(split, obs: pd.DataFrame, role: str) -> set[tuple[str, str]]:
    mask = split.mask(role) & (obs[DRUG].astype(str) != split.control).to_numpy()
    return set(zip(obs.loc[mask, CELL_TYPE].astype(str), obs.loc[mask, DRUG].astype(str)))


def check_drugs_stay_in_training(split, obs: pd.DataFrame) -> None:
    """Every held-out pair's drug is in training in another cell line, never in its own."""
    train = pairs(split, obs, TRAIN)
    for ct, drug in pairs(split, obs, TEST) | pairs(split, obs, VAL):
        assert (ct, drug) not in train
        assert any(d == drug and c != ct for c, d in train), (ct, drug)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_held_out_drug_is_trained_in_another_cell_line(smoke, seed):
    obs = smoke.sc.obs
    split = get_split(NAME, smoke.sc, seed=seed)
    test, val = pairs(split, obs, TEST), pairs(split, obs, VAL)
    assert test and val and not test & val
    check_drugs_stay_in_training(split, obs)
    assert split.mask(TRAIN)[(obs[DRUG] == "control").to_numpy()].all()


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_partition_the_pairs_and_validation_comes_from_other_folds(smoke, folds):
    obs = smoke.sc.obs
    tested: list[tuple[str, str]] = []
    for fold in range(folds):
        split = benchmark_split(smoke, NAME, seed=3, fold=fold, folds=folds)
        test, val = pairs(split, obs, TEST), pairs(split, obs, VAL)
        assert val and not test & val
        check_drugs_stay_in_training(split, obs)
        tested += sorted(test)
    assert sorted(tested) == candidates(obs, smoke.control)[0]


def test_a_drug_measured_in_one_cell_line_or_inside_a_combination_there_is_not_held_out(smoke):
    sc = smoke.sc.copy()
    drugs, lines = sc.obs[DRUG].astype(str), sc.obs[CELL_TYPE].astype(str)
    sc = sc[~((drugs == "D000") & (lines != "CL00")).to_numpy()].copy()  # D000 measured in CL00 only
    names = sc.obs[DRUG].astype(str).to_numpy()
    names[(names == "D002") & (sc.obs[CELL_TYPE].astype(str) == "CL01").to_numpy()] = "D001+D002"
    sc.obs[DRUG] = pd.Categorical(names)
    held = set()
    for seed in range(6):
        split = get_split(NAME, sc, seed=seed)  # validated: no leak through the combination
        held |= pairs(split, sc.obs, TEST) | pairs(split, sc.obs, VAL)
    assert not {d for _, d in held} & {"D000", "D001+D002"}
    assert ("CL01", "D001") not in held and ("CL01", "D002") not in held
    assert ("CL00", "D001") in held or ("CL02", "D001") in held


def test_the_leak_check_fails_on_a_crafted_leak(smoke):
    split = get_split(NAME, smoke.sc, seed=0)
    obs = smoke.sc.obs
    ct, drug = sorted(pairs(split, obs, TEST))[0]
    labels = split.labels.copy()
    labels.iloc[np.flatnonzero(((obs[CELL_TYPE] == ct) & (obs[DRUG] == drug)).to_numpy())[0]] = TRAIN
    with pytest.raises(BenchError, match=f"also in training in the same cell line: {drug} in {ct}"):
        type(split)(NAME, labels, control=split.control).validate(obs)
    # a training combination of the held-out drug in its own cell line leaks it too
    other = next(d for c, d in sorted(pairs(split, obs, TRAIN)) if c == ct and d != drug)
    names = obs[DRUG].astype(str).to_numpy().copy()
    names[((obs[CELL_TYPE] == ct) & (obs[DRUG] == other)).to_numpy()] = f"{other}+{drug}"
    with pytest.raises(BenchError, match=f"{drug} in {ct}"):
        split.validate(obs.assign(**{DRUG: names}))


@pytest.mark.parametrize("name", sorted(split_names()))
def test_every_split_checks_its_hold_out_for_leaks(smoke, name):
    split = get_split(name, smoke.sc, seed=0)  # a split as made passes
    obs = smoke.sc.obs
    test = split.mask(TEST)
    labels = split.labels.copy()
    labels.iloc[np.flatnonzero(test)[0]] = TRAIN  # one cell of a test condition moved to training
    with pytest.raises(BenchError, match="also in training"):
        type(split)(split.name, labels, control=split.control).validate(obs)


def test_a_new_combination_of_trained_drugs_may_be_tested_but_a_trained_combination_leaks_its_drug(smoke):
    obs = smoke.sc.obs.copy()
    names = obs[DRUG].astype(str).to_numpy().copy()
    names[names == "D003"] = "D000+D001"
    obs[DRUG] = names
    combination = pd.Series(np.where(names == "D000+D001", TEST, TRAIN), index=obs.index)
    Split("unseen_drugs", combination).validate(obs)  # a stored split may test a new combination
    single = pd.Series(np.where(names == "D000", TEST, TRAIN), index=obs.index)
    with pytest.raises(BenchError, match="test drug\\(s\\) also in training: D000"):
        Split("unseen_drugs", single).validate(obs)


def test_a_family_split_catches_a_sibling_in_training(smoke):
    split = get_split("unseen_drug_families", smoke.sc, seed=0)
    obs = smoke.sc.obs
    first, *siblings = split.drugs(obs, TEST)
    labels = split.labels.where((obs[DRUG] != first).to_numpy(), TRAIN)  # one test drug moved wholly to training
    assert siblings
    with pytest.raises(BenchError, match="family member in training"):
        type(split)(split.name, labels, control=split.control).validate(obs)


def test_no_predictor_is_skipped_for_bulk_profiles_of_held_out_drugs(smoke):
    """Every held-out drug is a training drug elsewhere; with a partial bulk set, drugs without bulk
    profiles are never held out, so the bulk predictors still run."""
    dropped = {"D000", "D005"}
    partial = Benchmark(sc=smoke.sc, bulk=smoke.bulk[~smoke.bulk.obs[DRUG].astype(str).isin(dropped)].copy(), name="partial")
    for bench in (smoke, partial):
        split = benchmark_split(bench, NAME, seed=0)
        obs = bench.sc.obs
        task = Task(train=bench.sc[split.mask(TRAIN)].copy(), bulk=bench.bulk, test_conditions=split.conditions(obs, TEST),
                    val_conditions=split.conditions(obs, VAL))
        for name in ("knn", "linear", "cVAE", "knn_structure", "ridge_structure", "chemCPA"):
            assert registry.predictor_class(name)[0].unavailable(task) is None, name
    assert not dropped & set(split.drugs(obs, TEST) + split.drugs(obs, VAL))


def test_a_cell_line_fold_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--split", NAME, "--predictors", "train_mean,knn", "--folds", "3", "--fold", "0",
                 "--out", str(out)]) == 0
    results = sorted(out.rglob("result.json"))
    assert len(results) == 2
    for path in results:
        result = json.loads(path.read_text())
        assert result["status"] == "ok" and result["split"] == NAME, result.get("error")
