"""CPA_smiles runs cpa-tools' structure mode on the smoke data with SMILES, refuses held-out drugs
without one, and what that mode trains (docs/baselines.md, CPA_smiles) still holds for the installed
cpa-tools: if one of the last test's assertions fails, cpa-tools changed and that section is stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bench.data.drugs import SMILES
from bench.errors import DataUnsuitable
from bench.schema import DRUG
from predictors import registry
from predictors.base import Task
from predictors.cpa_smiles import CONTROL_SMILES, distinct_spellings

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cpa") is None, reason="cpa-tools is not installed (install.sh)")

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "cpa_smiles_check.py"
STALE = "cpa-tools' structure mode changed: re-run docs/experiments/cpa_smiles_check.py and update docs/baselines.md (CPA_smiles)"
# Real molecules, one per smoke drug (D000..D011): aspirin, caffeine, ibuprofen, paracetamol, vorinostat,
# metformin, nicotine, naproxen, diclofenac, toluenesulfonamide, procainamide, salicylic acid.
MOLECULES = ("CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "CC(=O)Nc1ccc(O)cc1",
             "ONC(=O)CCCCCCC(=O)Nc1ccccc1", "CN(C)C(=N)N=C(N)N", "CN1CCC[C@H]1c1cccnc1", "COc1ccc2cc(ccc2c1)[C@H](C)C(=O)O",
             "OC(=O)Cc1ccccc1Nc1c(Cl)cccc1Cl", "Cc1ccc(cc1)S(=O)(=O)N", "CCN(CC)CCNC(=O)c1ccc(N)cc1", "O=C(O)c1ccccc1O")


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("cpa_smiles_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smiles(smoke) -> dict[str, str]:
    drugs = sorted(set(smoke.sc.obs[DRUG].astype(str)) - {"control"})
    assert len(drugs) <= len(MOLECULES)
    return dict(zip(drugs, MOLECULES))


@pytest.fixture(scope="module")
def data(smoke, smiles, check):
    """Smoke single-cell and bulk sets carrying obs `smiles` for every single-cell drug."""
    return check.with_smiles(smoke.sc, smiles), check.with_smiles(smoke.bulk, smiles)


def _task(check, sc, bulk, epochs: int = 2) -> Task:
    return check.make_task(sc, bulk, epochs)


def _without(adata, drug: str, value=np.nan):
    """A copy of `adata` whose rows of `drug` carry `value` as their SMILES."""
    out = adata.copy()
    out.obs[SMILES] = np.where(out.obs[DRUG].astype(str) == drug, value, out.obs[SMILES].astype(object))
    return out


def test_cpa_smiles_predicts_every_test_condition_from_fingerprints(data, check, smiles):
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    task = _task(check, *data)
    reported = []
    task.on_epoch = lambda epoch, stats: reported.append(epoch)
    predictor = registry.create("CPA_smiles")
    predictor.fit(task)
    assert reported == [1, 2]
    pred = predictor.predict_many(task.test_conditions, task.controls)
    assert set(pred) == set(task.test_conditions)
    for c, cells in pred.items():
        assert cells.shape == task.controls(c.cell_type).shape and np.isfinite(cells).all()
    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fingerprints = predictor.fingerprints()
    for drug, s in smiles.items():  # held-out drugs included: their SMILES came from the bulk set
        np.testing.assert_array_equal(fingerprints[drug], morgan.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)))
    assert not fingerprints[task.control].any()  # the control is the empty molecule


def test_held_out_drug_without_smiles_is_unsuitable_and_named(data, check):
    sc, bulk = data
    task = _task(check, sc, bulk)
    drug = task.test_conditions[0].drug
    for value in (np.nan, "not a molecule"):
        with pytest.raises(DataUnsuitable, match=f"held-out drug.*{drug}"):
            registry.create("CPA_smiles").fit(_task(check, sc, _without(bulk, drug, value)))
    with pytest.raises(DataUnsuitable, match=drug):
        registry.create("CPA_smiles").fit(_task(check, sc, None))  # no bulk set: held-out SMILES nowhere


def test_training_drug_without_smiles_is_left_out(data, check):
    sc, bulk = data
    task = _task(check, sc, bulk, epochs=1)
    drug = task.training_conditions()[0].drug
    predictor = registry.create("CPA_smiles")
    predictor.fit(_task(check, _without(sc, drug), _without(bulk, drug), epochs=1))
    assert predictor.left_out == [drug] and drug not in predictor._vocab
    assert drug not in set(predictor.model.adata.obs[DRUG].astype(str))


def test_drugs_sharing_a_smiles_get_distinct_spellings_of_one_molecule():
    from rdkit import Chem

    spelled = distinct_spellings({"a": "CCO", "b": "CCO", "c": "OCC"})
    assert len(set(spelled.values()) | {CONTROL_SMILES}) == 4
    assert {Chem.CanonSmiles(s) for s in spelled.values()} == {"CCO"}


def test_structure_mode_trains_no_projection_and_no_held_out_dose_curve(data, check):
    """The facts of docs/baselines.md (CPA_smiles), measured on the smoke data (3 epochs)."""
    facts = check.check(*data, epochs=3)
    projection = check.PROJECTION
    # (a) the fingerprint projection is in no optimiser and keeps its initial weights, though gradients reach it
    assert set(projection) <= set(facts["not_optimised"]), STALE
    assert all(facts["projection_change"][n] == 0.0 for n in projection), STALE
    assert all(facts["projection_grad_norm"][n] > 0 for n in projection), STALE
    assert facts["encoder_relative_change"] > 0.01  # the rest of the model did train
    # (b) held-out dose curves: bias untouched; beta moved only by weight decay, about doser_lr per step
    assert facts["held_out_bias_max_change"] == 0.0, STALE
    drift = facts["doser_steps"] * facts["doser_lr"]
    assert 0.8 * drift < facts["held_out_beta_max_change"] <= 1.01 * drift, STALE
    assert facts["training_bias_max_change"] > 0
    # (c) swapping a held-out drug's SMILES changes its fingerprint row only, and its prediction
    assert facts["swap_same_trained_weights"] and facts["swap_embedding_rows_differ"] == [facts["swapped_drug"]], STALE
    assert facts["swap_prediction_change"] > 0.1 * facts["training_drug_pair_difference"], STALE
    assert facts["control_drug_vector_at_dose_0"] == 0.0, STALE
