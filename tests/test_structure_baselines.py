"""`knn_structure` and `ridge_structure`: the structure counterparts of `knn` and `linear`, reading
only the drugs' SMILES (Morgan fingerprints), never bulk expression."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.drugs import SMILES
from bench.data.molecules import morgan_fingerprints, tanimoto
from bench.errors import DataUnsuitable
from bench.schema import DRUG
from predictors.base import Task
from predictors.floors import TrainMeanShift
from predictors.knn_structure import KnnStructure
from predictors.ridge_structure import RidgeStructure
from splits import benchmark_split
from splits.base import TEST, TRAIN, VAL
from test_leak import _walk


def make_task(bench, split_name: str = "unseen_drugs", bulk: bool = True) -> Task:
    split = benchmark_split(bench, split_name, seed=0)
    obs = bench.sc.obs
    return Task(train=bench.sc[split.mask(TRAIN)].copy(), bulk=bench.bulk if bulk else None,
                test_conditions=split.conditions(obs, TEST), val_conditions=split.conditions(obs, VAL))


@pytest.fixture(scope="module")
def task(smoke) -> Task:
    return make_task(smoke)


def fitted(model, task: Task):
    model.fit(task)
    return model


def with_smiles(smoke, drug: str, smiles: str):
    """A copy of the smoke benchmark in which `drug` has `smiles` in both sets."""
    copy = type(smoke)(sc=smoke.sc.copy(), bulk=smoke.bulk.copy(), name="edited")
    for adata in (copy.sc, copy.bulk):
        column = adata.obs[SMILES].astype(object)
        column[adata.obs[DRUG].astype(str) == drug] = smiles
        adata.obs[SMILES] = column
    return copy


def test_knn_structure_picks_the_tanimoto_nearest_training_drugs(smoke, task):
    treated = smoke.sc.obs[smoke.sc.obs[DRUG] != "control"].drop_duplicates(DRUG)
    smiles = dict(zip(treated[DRUG].astype(str), treated[SMILES].astype(str)))
    drugs = sorted(smiles)
    similarity = pd.DataFrame(tanimoto(morgan_fingerprints([smiles[d] for d in drugs])), index=drugs, columns=drugs)
    knn = fitted(KnnStructure(), task)
    for cond in task.test_conditions:
        candidates = sorted({c.drug for c in task.training_conditions() if (c.cell_type, c.dose) == (cond.cell_type, cond.dose)})
        expected = sorted(candidates, key=lambda d: -similarity.loc[cond.drug, d])[:5]
        assert knn.neighbours(cond) == expected


def test_knn_structure_returns_only_training_cells_of_its_neighbours(task):
    knn = fitted(KnnStructure(k=3), task)
    cond = task.test_conditions[0]
    pred = knn.predict(cond, task.controls(cond.cell_type))
    picks = knn.neighbours(cond)
    assert len(picks) == 3 and cond.drug not in picks
    np.testing.assert_array_equal(pred, np.vstack([task.cells(cond.cell_type, d, cond.dose) for d in picks]))


def test_a_fitted_structure_predictor_reaches_no_held_out_cell(smoke):
    split = benchmark_split(smoke, "unseen_drugs", seed=0)
    held = np.flatnonzero(split.labels.to_numpy() != TRAIN)
    held_rows = {r.tobytes() for r in np.asarray(smoke.sc.X[held].toarray(), dtype=np.float32)}
    task = make_task(smoke)
    for model in (KnnStructure(), RidgeStructure()):
        fitted(model, task)
        found: dict[str, set] = {"rows": set(), "types": set(), "keys": set()}
        _walk(model, model.predict_many(task.test_conditions, task.controls), found=found)
        assert found["rows"] and not held_rows & found["rows"], type(model).__name__


def test_a_held_out_drug_without_a_smiles_skips_the_run_with_its_name(smoke, task, tmp_path):
    drug = task.test_conditions[0].drug
    blank = make_task(with_smiles(smoke, drug, ""))
    for cls in (KnnStructure, RidgeStructure):
        assert drug in cls.unavailable(blank)
    unreadable = make_task(with_smiles(smoke, drug, "not a molecule"))
    for model in (KnnStructure(), RidgeStructure(alphas=(1.0,))):
        assert type(model).unavailable(unreadable) is None
        with pytest.raises(DataUnsuitable, match=f"no readable SMILES for held-out drug.*{drug}"):
            model.fit(unreadable)
    edited = with_smiles(smoke, drug, "not a molecule")
    edited.sc.write_h5ad(tmp_path / "sc.h5ad")
    edited.bulk.write_h5ad(tmp_path / "bulk.h5ad")
    out = tmp_path / "out"
    argv = ["run", "--sc", str(tmp_path / "sc.h5ad"), "--bulk", str(tmp_path / "bulk.h5ad"), "--predictors", "knn_structure",
            "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "runs/knn_structure/seed0/result.json").read_text())
    assert result["status"] == "skipped" and drug in result["error"]


def test_without_a_bulk_set_only_a_split_that_trains_on_the_drug_elsewhere_serves_its_smiles(smoke):
    unseen = make_task(smoke, bulk=False)
    assert "no bulk set" in KnnStructure.unavailable(unseen)
    other_lines = make_task(smoke, "unseen_drug_cell_line", bulk=False)
    assert KnnStructure.unavailable(other_lines) is None and RidgeStructure.unavailable(other_lines) is None
    cond = other_lines.test_conditions[0]
    assert len(fitted(KnnStructure(), other_lines).predict(cond, other_lines.controls(cond.cell_type)))


def changes(model, task: Task, conditions) -> np.ndarray:
    """Each condition's predicted mean change from the control mean, stacked."""
    return np.stack([(model.predict(c, task.controls(c.cell_type)) - task.controls(c.cell_type)).mean(axis=0) for c in conditions])


def test_ridge_structure_at_a_very_strong_penalty_is_train_mean(task):
    ridge, floor = fitted(RidgeStructure(alphas=(1e9,)), task), fitted(TrainMeanShift(), task)
    for cond in task.test_conditions:
        controls = task.controls(cond.cell_type)
        np.testing.assert_allclose(ridge.predict(cond, controls), floor.predict(cond, controls), atol=1e-5)


def test_ridge_structure_at_a_weak_penalty_fits_the_training_drugs(task):
    conditions = task.training_conditions()
    true = np.stack([task.cells(c.cell_type, c.drug, c.dose).mean(axis=0) - task.controls(c.cell_type).mean(axis=0)
                     for c in conditions])
    weak = changes(fitted(RidgeStructure(alphas=(1e-6,)), task), task, conditions)
    strong = changes(fitted(RidgeStructure(alphas=(1e9,)), task), task, conditions)
    assert np.abs(weak - true).max() < 1e-3 * np.abs(true).max() < np.abs(strong - true).max()


def test_the_structure_baselines_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--predictors", "knn_structure,ridge_structure,train_mean", "--out", str(out)]) == 0
    for name in ("knn_structure", "ridge_structure"):
        result = json.loads((out / "runs" / name / "seed0" / "result.json").read_text())
        assert result["status"] == "ok", (name, result.get("error"))
    assert json.loads((out / "runs/ridge_structure/seed0/result.json").read_text())["trainable"]
