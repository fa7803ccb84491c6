"""The first predictors do what their names promise, on the generated smoke benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation import Evaluator
from bench.schema import CELL_TYPE, DRUG
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL


@pytest.fixture(scope="module")
def setup(smoke):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    task = Task(
        train=smoke.sc[split.mask(TRAIN)].copy(),
        bulk=smoke.bulk,
        test_conditions=split.conditions(obs, TEST),
        val_conditions=split.conditions(obs, VAL),
        truth=smoke.truth,
    )
    return task, Evaluator(smoke.sc, split.conditions(obs, TEST))


def _fitted(name, task, seed=0):
    p = registry.create(name, seed=seed)
    p.fit(task)
    return p


def test_training_set_holds_no_test_cell(setup):
    task, _ = setup
    test_drugs = {c.drug for c in task.test_conditions}
    assert not test_drugs & set(task.train.obs[DRUG].astype(str))


def test_control_mean_returns_the_controls(setup):
    task, ev = setup
    cond = task.test_conditions[0]
    ctrl = ev.control_source()(cond.cell_type)
    np.testing.assert_array_equal(_fitted("control_mean", task).predict(cond, ctrl), ctrl)


def test_train_mean_shifts_controls_by_the_mean_training_effect(setup):
    task, ev = setup
    cond = task.test_conditions[0]
    ctrl = ev.control_source()(cond.cell_type)
    pred = _fitted("train_mean", task).predict(cond, ctrl)
    drugs = sorted({c.drug for c in task.training_conditions() if c.cell_type == cond.cell_type})
    expected = np.mean([task.cells(cond.cell_type, d, cond.dose).mean(axis=0) for d in drugs], axis=0) - task.controls(cond.cell_type).mean(axis=0)
    np.testing.assert_allclose(pred - ctrl, np.broadcast_to(expected, ctrl.shape), atol=1e-5)


def test_random_uses_five_training_conditions_of_the_cell_type(setup):
    task, ev = setup
    cond = task.test_conditions[0]
    pred = _fitted("random", task, seed=3).predict(cond, ev.control_source()(cond.cell_type))
    sizes = {len(task.cells(c.cell_type, c.drug, c.dose)) for c in task.training_conditions()}
    assert len(sizes) == 1 and pred.shape[0] == 5 * sizes.pop()
    again = _fitted("random", task, seed=3).predict(cond, ev.control_source()(cond.cell_type))
    other = _fitted("random", task, seed=4).predict(cond, ev.control_source()(cond.cell_type))
    np.testing.assert_array_equal(pred, again)
    assert not np.array_equal(pred, other)


def test_knn_prefers_drugs_of_the_same_family(setup, smoke):
    """Drugs of one family share their mechanism in the generator; bulk neighbours should find them."""
    task, _ = setup
    truth = smoke.truth
    family = dict(zip(map(str, truth["drugs"]), truth["drug_family"]))
    knn = _fitted("knn", task)
    hits, total = 0, 0
    for cond in task.test_conditions:
        for d in knn.neighbours(cond)[:2]:
            hits += family[d] == family[cond.drug]
            total += 1
    train_drugs = sorted({c.drug for c in task.training_conditions()})
    base_rate = np.mean([family[d] == family[c.drug] for c in task.test_conditions for d in train_drugs])
    assert hits / total > base_rate


def test_oracle_bounds_the_floors(setup):
    task, ev = setup
    scores = {}
    for name in ("oracle", "control_mean"):
        p = _fitted(name, task)
        scores[name] = ev.score_predictor(p.predict_many)["mean_DE10"].mean()
    assert scores["oracle"] > scores["control_mean"] + 0.05


def test_prediction_shape_is_checked(setup):
    from bench.errors import BenchError

    task, ev = setup
    cond = ev.conditions[0]
    with pytest.raises(BenchError, match="expected \\(n_cells>0"):
        ev.score({c: np.zeros((3, 2)) for c in ev.conditions})
    bad = {c: np.full((3, task.train.n_vars), np.nan) for c in ev.conditions}
    with pytest.raises(BenchError, match="NaN"):
        ev.score(bad)
    assert cond.cell_type in set(task.train.obs[CELL_TYPE].astype(str))
