"""The cVAE trains on the smoke data, reports every epoch, and represents an unseen drug by the
learned projection of its bulk signature (not by an untrained vector)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from predictors import registry
from predictors.base import Task
from predictors.cvae import bulk_signatures
from splits import get_split
from splits.base import TEST, TRAIN, VAL


@pytest.fixture(scope="module")
def fitted(smoke):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    task = Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), max_epochs=2)
    reported = []
    task.on_epoch = lambda epoch, stats: reported.append((epoch, stats))
    predictor = registry.create("cVAE")
    predictor.fit(task)
    return predictor, task, reported


def test_cvae_reports_every_epoch_and_predicts_from_controls(fitted):
    predictor, task, reported = fitted
    assert [e for e, _ in reported] == [1, 2]
    assert reported[1][1]["nll"] < reported[0][1]["nll"]
    cond = task.test_conditions[0]
    controls = task.controls(cond.cell_type)
    pred = predictor.predict(cond, controls)
    assert pred.shape == controls.shape and pred.dtype == np.float32 and np.isfinite(pred).all()


def test_unseen_drug_is_its_projected_bulk_signature(fitted):
    predictor, task, _ = fitted
    unseen = task.test_conditions[0]
    row = predictor._signatures[predictor._drugs.get_loc(unseen.drug)]
    assert torch.count_nonzero(row) > 0
    controls = task.controls(unseen.cell_type)
    before = predictor.predict(unseen, controls)
    predictor._signatures[predictor._drugs.get_loc(unseen.drug)] = -row  # another bulk response, another prediction
    try:
        assert not np.allclose(predictor.predict(unseen, controls), before, atol=1e-4)
    finally:
        predictor._signatures[predictor._drugs.get_loc(unseen.drug)] = row


def test_bulk_signature_is_the_line_averaged_drug_minus_control_shift():
    obs = pd.DataFrame({"drug": ["control", "A", "A", "control", "A"], "cell_type": ["L1", "L1", "L1", "L2", "L2"],
                        "dose": [0.0, 1.0, 10.0, 0.0, 1.0]}, index=[f"p{i}" for i in range(5)])
    x = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [1.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    sig = bulk_signatures(ad.AnnData(x, obs=obs), ["A", "B"], "control")
    raw = np.array([(3.0 + 0.0) / 2, (0.0 + 2.0) / 2])  # L1: (3, 0); L2: (0, 2)
    np.testing.assert_allclose(sig[0], raw / raw.std(), rtol=1e-6)
    np.testing.assert_array_equal(sig[1], 0.0)  # no bulk profile: no information


def test_batched_prediction_equals_one_condition_at_a_time(fitted):
    """predict_many decodes many conditions (several cell types) in one pass: same cells as predict."""
    predictor, task, _ = fitted
    conditions = (task.test_conditions + task.val_conditions)[::5]
    assert len({c.cell_type for c in conditions}) > 1
    batched = predictor.predict_many(conditions, task.controls)
    for c in conditions:
        np.testing.assert_allclose(batched[c], predictor.predict(c, task.controls(c.cell_type)), atol=1e-5)
