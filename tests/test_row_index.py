"""Rows grouped once (`RowIndex`) select exactly what the per-look-up boolean masks selected: the
evaluator's true cells, DE lists, the task's training cells and knn's bulk signatures are the same."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition, RowIndex, condition_mask, conditions_of
from metrics.de import rank_by_abs_t, rank_de_genes
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL


def mask_rows(obs: pd.DataFrame, cell_type: str | None, drug: str, dose: float | None = None) -> np.ndarray:
    """The look-up as a scan of every row (the way before grouping)."""
    if dose is not None:
        return np.flatnonzero(condition_mask(obs, Condition(cell_type, drug, dose)))
    mask = (obs[DRUG].astype(str) == drug).to_numpy()
    if cell_type is not None:
        mask &= (obs[CELL_TYPE].astype(str) == cell_type).to_numpy()
    return np.flatnonzero(mask)


def test_rows_of_every_condition_and_control_match_the_masks(smoke):
    for adata in (smoke.sc, smoke.bulk):
        obs, index = adata.obs, RowIndex(adata.obs)
        conditions = conditions_of(obs)
        for c in conditions:
            np.testing.assert_array_equal(index.rows(c.cell_type, c.drug, c.dose), mask_rows(obs, c.cell_type, c.drug, c.dose))
        for ct, drug in {(c.cell_type, c.drug) for c in conditions} | {(ct, CONTROL) for ct in obs[CELL_TYPE].unique()}:
            np.testing.assert_array_equal(index.rows(ct, drug), mask_rows(obs, ct, drug))
            np.testing.assert_array_equal(index.rows(None, drug), mask_rows(obs, None, drug))
        assert index.rows("absent", "D000").size == 0 and index.rows(None, "absent").size == 0


def test_doses_match_by_relative_tolerance_and_labels_as_strings():
    obs = pd.DataFrame({CELL_TYPE: pd.Categorical([1, 1, 2, 1]), DRUG: ["A", "A", "A", "B"],
                        DOSE: [1e-9, 1e-9 * (1 + 1e-12), 1e-9, 1e-8]})
    index = RowIndex(obs)
    np.testing.assert_array_equal(index.rows("1", "A", 1e-9), [0, 1])
    assert index.rows("1", "A", 1e-8).size == 0 and index.pairs == [("1", "A"), ("1", "B"), ("2", "A")]


def test_de_lists_match_ranking_with_masks(smoke):
    sc = smoke.sc
    x, obs = sc.X, sc.obs
    expected = {}
    for ct, drug in sorted({(c.cell_type, c.drug) for c in conditions_of(obs)}):
        expected[f"{ct}_{drug}"] = rank_by_abs_t(x[mask_rows(obs, ct, drug)], x[mask_rows(obs, ct, CONTROL)])
    ranked = rank_de_genes(sc)
    assert list(ranked) == list(expected)
    for key in expected:
        np.testing.assert_array_equal(ranked[key], expected[key])


@pytest.fixture(scope="module")
def task(smoke):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL))


def test_task_cells_match_the_masks(task):
    obs, x = task.train.obs, task.train.X
    for c in task.training_conditions():
        np.testing.assert_array_equal(task.cells(c.cell_type, c.drug, c.dose), x[mask_rows(obs, c.cell_type, c.drug, c.dose)].toarray())
        np.testing.assert_array_equal(task.cells(c.cell_type, c.drug), x[mask_rows(obs, c.cell_type, c.drug)].toarray())


def test_knn_signatures_match_the_masks(task):
    knn = registry.create("knn")
    knn.fit(task)
    obs, x = task.bulk.obs, np.asarray(task.bulk.X)
    for drug in sorted({c.drug for c in task.test_conditions + task.training_conditions()}):
        for line in [*sorted(set(obs[CELL_TYPE].astype(str))), None]:
            got = knn._signature(drug, line)
            lines = [line] if line is not None else sorted(set(obs.loc[(obs[DRUG] == drug).to_numpy(), CELL_TYPE].astype(str)))
            shifts = [x[mask_rows(obs, ln, drug)].mean(axis=0) - x[mask_rows(obs, ln, CONTROL)].mean(axis=0)
                      for ln in lines if mask_rows(obs, ln, drug).size and mask_rows(obs, ln, CONTROL).size]
            if not shifts:
                assert got is None
            else:  # in-line shifts; with no line given, their mean over the lines that measured the drug
                np.testing.assert_array_equal(got, np.mean(shifts, axis=0))
