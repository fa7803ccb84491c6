"""CPA and CPA_transfer train through the real cpa-tools package on the smoke data, predict
counterfactually from controls exactly as cpa-tools does, and keep held-out drugs' bulk embeddings."""

from __future__ import annotations

import importlib.util
import pickle
import warnings

import numpy as np
import pytest

from bench.schema import Condition
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cpa") is None, reason="cpa-tools is not installed (install.sh)")


@pytest.fixture(scope="module")
def task(smoke) -> Task:
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), max_epochs=2)


def _fit(name: str, task: Task, **options):
    reported = []
    task.on_epoch = lambda epoch, stats: reported.append((epoch, stats))
    predictor = registry.create(name, **options)
    predictor.fit(task)
    return predictor, reported


@pytest.fixture(scope="module")
def transfer(task):
    return _fit("CPA_transfer", task, bulk_epochs=2, sample=False)


def test_cpa_reports_every_epoch_and_predicts_from_controls(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    predictor, reported = _fit("CPA", task)
    assert [e for e, _ in reported] == [1, 2]
    assert all(np.isfinite(s["recon"]) for _, s in reported)
    assert list(tmp_path.iterdir()) == []  # cpa-tools saved nothing into the working directory
    cond = task.test_conditions[0]
    controls = task.controls(cond.cell_type)
    pred = predictor.predict(cond, controls)
    assert pred.shape == controls.shape and np.isfinite(pred).all()
    assert not np.allclose(pred, controls, atol=1e-3)


def test_prediction_equals_cpa_tools_own_counterfactual_predict(transfer):
    predictor, _ = transfer
    model = predictor.model
    rows = model.adata[model.adata.obs["cpa_split"].to_numpy() == "ood"].copy()  # control profiles, target labels
    model.predict(adata=rows, batch_size=rows.n_obs, n_samples=1)
    ours = np.vstack([
        predictor.predict(Condition(str(o.cell_type), str(o.drug), o.cpa_dose * predictor._dose_scale), np.asarray(rows.X[i : i + 1]))
        for i, o in enumerate(rows.obs.itertuples())
    ])
    np.testing.assert_allclose(ours, rows.obsm["CPA_pred"], atol=1e-5)


def test_vocabularies_hold_held_out_drugs_and_are_shared_by_bulk_and_single_cell(transfer, task):
    predictor, _ = transfer
    held_out = {c.drug for c in task.test_conditions + task.val_conditions}
    assert held_out <= set(predictor._vocab)
    sc_drugs = set(predictor.model.adata_manager.get_state_registry("drug")["categorical_mapping"])
    assert held_out <= sc_drugs
    assert predictor.model.pert_encoder == predictor.bulk_model.pert_encoder == predictor._vocab


def test_held_out_drugs_keep_their_bulk_embeddings_through_fine_tuning(transfer, task):
    predictor, reported = transfer
    assert [e for e, _ in reported] == [1, 2]
    after = predictor.drug_embeddings()
    for drug in {c.drug for c in task.test_conditions + task.val_conditions}:
        np.testing.assert_array_equal(after[drug], predictor.bulk_embeddings[drug])
    trained = task.training_conditions()[0].drug
    assert not np.array_equal(after[trained], predictor.bulk_embeddings[trained])


def test_weight_decay_alone_moves_unused_embeddings(task):
    """Why fine-tuning defaults to no weight decay: with Adam, decay moves rows that no cell uses."""
    predictor, _ = _fit("CPA_transfer", task, bulk_epochs=1, finetune_weight_decay=1e-6)
    drug = task.test_conditions[0].drug
    assert not np.array_equal(predictor.drug_embeddings()[drug], predictor.bulk_embeddings[drug])


def test_compatibility_shims_keep_warnings_and_leave_pickle_loading_off(transfer, tmp_path):
    """The shims keep the process's warning filters and never turn pickle loading back on: a saved
    CPA model (scvi pickles numpy and pandas objects) is refused by torch's weights-only loader."""
    from predictors.cpa_compat import load_cpa

    cpa = load_cpa()
    assert not any(f[0] == "ignore" and f[2] is Warning and f[1] is None and f[3] is None for f in warnings.filters)
    predictor, _ = transfer
    predictor.model.save(str(tmp_path / "model"), overwrite=True)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        cpa.CPA.load(str(tmp_path / "model"), adata=predictor.model.adata)


def test_batched_prediction_equals_one_condition_at_a_time(transfer, task):
    """predict_many sends many conditions' rows (several cell types) through the module at once."""
    predictor, _ = transfer
    conditions = (task.test_conditions + task.val_conditions)[::7]
    assert len({c.cell_type for c in conditions}) > 1
    batched = predictor.predict_many(conditions, task.controls)
    for c in conditions:
        np.testing.assert_allclose(batched[c], predictor.predict(c, task.controls(c.cell_type)), atol=1e-5)
