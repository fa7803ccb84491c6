"""Drug combinations: their own conditions with one dose per drug, held out with any drug they
contain, and skipped with a reason by predictors that cannot predict them."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest

from bench.cli import main
from bench.data.combinations import DOSE_PARTS, combination_problem, components
from bench.data.loaders import load_single_cell
from bench.errors import BenchError
from bench.schema import CONTROL, DOSE, DRUG, Condition
from predictors.base import Predictor
from splits import get_split
from splits.base import TEST, TRAIN, VAL

RELABEL = {"D010": "D000+D001", "D011": "D002 + D003", "D009": "D004+control"}


def test_labels_split_only_outside_brackets():
    assert components("A+B") == ("A", "B") and components("A + B+C") == ("A", "B", "C")
    assert components("(+)-JQ1") == ("(+)-JQ1",) and components("(+)-JQ1+A") == ("(+)-JQ1", "A")
    assert components("A+") == ("A+",)


@pytest.fixture(scope="module")
def combo_file(smoke, tmp_path_factory):
    """The smoke single-cell set with three drugs relabelled as combinations (doses 'd+d' nM)."""
    sc = smoke.sc.copy()
    sc.uns.pop("bench_truth", None)
    written = sc.obs[DRUG].astype(str)
    combo = written.isin(list(RELABEL)).to_numpy()
    sc.obs["condition"] = written.replace(RELABEL).to_numpy()
    sc.obs[DOSE] = [f"{d:g}+{d:g}" if c else f"{d:g}" for d, c in zip(sc.obs[DOSE], combo)]
    sc.obs = sc.obs.drop(columns=DRUG)
    path = tmp_path_factory.mktemp("combo") / "sc.h5ad"
    sc.write_h5ad(path)
    return path


def test_combinations_are_conditions_of_their_own(combo_file, smoke):
    sc = load_single_cell(combo_file)
    original = smoke.sc.obs
    rows = (original[DRUG] == "D010").to_numpy()
    assert set(sc.obs.loc[rows, DRUG]) == {"D000+D001"}
    np.testing.assert_allclose(sc.obs.loc[rows, DOSE], 2 * original.loc[rows, DOSE])  # the total dose
    assert set(sc.obs.loc[rows, DOSE_PARTS]) == {f"{d:g}+{d:g}" for d in original.loc[rows, DOSE]}
    assert set(sc.obs.loc[(original[DRUG] == "D011").to_numpy(), DRUG]) == {"D002+D003"}  # spaces dropped
    vehicle = (original[DRUG] == "D009").to_numpy()  # D004+control: D004 alone, at its own dose
    assert set(sc.obs.loc[vehicle, DRUG]) == {"D004"} and set(sc.obs.loc[vehicle, DOSE_PARTS]) == {""}
    np.testing.assert_allclose(sc.obs.loc[vehicle, DOSE], original.loc[vehicle, DOSE])


@pytest.mark.parametrize("seed", range(6))
def test_a_combination_is_held_out_with_its_drugs(combo_file, seed):
    sc = load_single_cell(combo_file)
    split = get_split("unseen_drugs", sc, seed=seed)
    obs = sc.obs
    drawn = {role: {d for d in split.drugs(obs, role) if len(components(d)) == 1} for role in (TEST, VAL)}
    assert drawn[TEST] and drawn[VAL]
    for label in split.drugs(obs, TRAIN):
        assert not set(components(label)) & (drawn[TEST] | drawn[VAL]), label
    for label in split.drugs(obs, VAL):
        assert not set(components(label)) & drawn[TEST] and set(components(label)) & drawn[VAL], label
    for label in split.drugs(obs, TEST):
        assert set(components(label)) & drawn[TEST], label


def test_a_stored_split_may_not_train_on_a_held_out_drug_inside_a_combination(combo_file):
    sc = load_single_cell(combo_file)
    drugs = sc.obs[DRUG].astype(str)
    sc.obs["split"] = np.where(drugs == "D000", "ood", np.where(drugs == "D005", "test", "train"))
    with pytest.raises(BenchError, match=r"training combination\(s\) D000\+D001 contain a held-out drug"):
        get_split("unseen_drugs", sc, split_column="split")
    sc.obs.loc[(drugs == "D000+D001").to_numpy(), "split"] = "ood"
    split = get_split("unseen_drugs", sc, split_column="split")
    assert split.drugs(sc.obs, TEST) == ["D000", "D000+D001"]


class _Plain(Predictor):
    def fit(self, task):  # pragma: no cover - never fitted here
        pass

    def predict(self, condition, controls):  # pragma: no cover
        return controls


class _Bulk(_Plain):
    needs = ("bulk",)


class _BulkButAble(_Bulk):
    combinations = True


class _Unable(_Plain):
    combinations = False


def test_who_can_predict_combinations():
    single, combo = Condition("A549", "D1", 10.0), Condition("A549", "D1+D2", 20.0)
    assert combination_problem(_Bulk, [single]) is None  # no combination held out: nothing to say
    assert combination_problem(_Plain, [single, combo]) is None
    assert combination_problem(_BulkButAble, [combo]) is None
    for cls in (_Bulk, _Unable):
        assert combination_problem(cls, [single, combo]) == "cannot predict drug combinations (1 in this split: D1+D2)"


def test_predictors_that_cannot_are_skipped_with_the_reason(combo_file, smoke, tmp_path):
    sc = load_single_cell(combo_file)
    drugs = sc.obs[DRUG].astype(str)
    stored = ad.read_h5ad(combo_file)
    stored.obs["split"] = np.where(drugs.isin(["D000", "D000+D001"]), "ood", np.where(drugs == "D005", "test", "train"))
    stored.write_h5ad(tmp_path / "sc.h5ad")
    smoke.bulk.write_h5ad(tmp_path / "bulk.h5ad")
    out = tmp_path / "run"
    argv = ["run", "--sc", str(tmp_path / "sc.h5ad"), "--bulk", str(tmp_path / "bulk.h5ad"), "--split-column", "split",
            "--predictors", "control_mean,train_mean,random,knn", "--out", str(out)]
    assert main(argv) == 0
    knn = json.loads((out / "runs/knn/seed0/result.json").read_text())
    assert knn["status"] == "skipped" and knn["error"] == "cannot predict drug combinations (2 in this split: D000+D001, D002+D003)"
    assert "cannot predict drug combinations" in (out / "leaderboard.md").read_text()
    for name in ("control_mean", "train_mean", "random"):
        result = json.loads((out / "runs" / name / "seed0" / "result.json").read_text())
        assert result["status"] == "ok", result
    assert set(json.loads((out / "run.json").read_text())["split_summary"]["test_drug_names"]) == {"D000", "D000+D001"}
    assert (sc.obs[DRUG] == CONTROL).sum() == (smoke.sc.obs[DRUG] == CONTROL).sum()
