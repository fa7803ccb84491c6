"""`biolord` trains through the real biolord package on the smoke data, reports every epoch, predicts
held-out drugs from their fingerprints as biolord's own `predict` does on relabelled control cells,
and is skipped with the reason when a held-out drug has no SMILES."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bench.errors import DataUnsuitable
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL

pytestmark = pytest.mark.skipif(importlib.util.find_spec("biolord") is None, reason="biolord is not installed (install.sh)")


def make_task(smoke, bulk: bool = True) -> Task:
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk if bulk else None,
                test_conditions=split.conditions(obs, TEST), val_conditions=split.conditions(obs, VAL), max_epochs=2)


@pytest.fixture(scope="module")
def fitted(smoke, tmp_path_factory):
    import os

    task = make_task(smoke)
    reported = []
    task.on_epoch = lambda epoch, stats: reported.append((epoch, stats))
    predictor = registry.create("biolord")
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        predictor.fit(task)
        assert os.listdir(".") == []  # biolord, scvi and lightning wrote nothing into the working directory
    finally:
        os.chdir(cwd)
    return predictor, task, reported


def test_reports_every_epoch_and_predicts_held_out_drugs_from_controls(fitted):
    predictor, task, reported = fitted
    assert [e for e, _ in reported] == [1, 2]
    assert all(np.isfinite(s["recon"]) and np.isfinite(s["penalty"]) for _, s in reported)
    for cond in task.test_conditions[:3]:
        controls = task.controls(cond.cell_type)
        pred = predictor.predict(cond, controls)
        assert pred.shape == controls.shape and np.isfinite(pred).all()
        assert not np.allclose(pred, controls, atol=1e-3)


def test_means_equal_biolords_own_predict_on_relabelled_controls(fitted):
    """The means (`sample=False`) are what `Biolord.predict` returns for the same training control
    rows (their learned latent codes) with the held-out drug's fingerprint and dose as their attribute."""
    from predictors.biolord_model import DRUG_KEY, drug_features

    predictor, task, _ = fitted
    cond = task.test_conditions[0]
    controls = task.controls(cond.cell_type)[:20]
    ours, _ = predictor.distribution([cond], lambda ct: controls)[cond]
    model = predictor.model
    rows = model.adata[predictor._codes(cond.cell_type, controls)].copy()
    rows.obsm[DRUG_KEY] = drug_features(predictor._fingerprints, np.array([cond.drug] * rows.n_obs), np.full(rows.n_obs, cond.dose),
                                        task.control, predictor._dose_scale)
    theirs, _ = model.predict(adata=rows)
    np.testing.assert_allclose(ours, theirs.X, atol=1e-5)


def test_sampled_cells_are_draws_around_the_means_and_batching_changes_nothing(fitted):
    predictor, task, _ = fitted
    conditions = task.test_conditions[::5]
    batched = predictor.predict_many(conditions, task.controls)
    for cond in conditions:
        np.testing.assert_allclose(batched[cond], predictor.predict(cond, task.controls(cond.cell_type)), atol=1e-5)
    predictor.config["sample"] = False
    try:
        means = predictor.predict(conditions[0], task.controls(conditions[0].cell_type))
    finally:
        predictor.config["sample"] = True
    assert not np.allclose(means, batched[conditions[0]])


def test_a_control_that_is_not_a_training_row_borrows_its_nearest_training_controls_code(fitted):
    predictor, task, _ = fitted
    cond = task.test_conditions[0]
    controls = task.controls(cond.cell_type)
    exact = predictor._codes(cond.cell_type, controls)
    assert len(set(exact)) == len(controls)  # every training control carries its own code
    nudged = controls + np.float32(1e-3)
    np.testing.assert_array_equal(predictor._codes(cond.cell_type, nudged), exact)


def test_skipped_with_the_reason_when_a_held_out_drug_has_no_smiles(smoke):
    """Without a bulk set a drug held out of single-cell training has no row to carry its SMILES."""
    blank = make_task(smoke, bulk=False)
    cls, _ = registry.predictor_class("biolord")
    reason = cls.unavailable(blank)
    assert reason is not None and "SMILES" in reason
    with pytest.raises(DataUnsuitable, match="biolord: no readable SMILES for held-out drug"):
        registry.create("biolord").fit(blank)
