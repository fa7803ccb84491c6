"""`scGen` trains through the real scgen package on the smoke data and carries a drug's latent shift
from the cell types where it was measured to a new one (`unseen_drug_cell_line`); under
`unseen_drugs` it cannot represent a held-out drug and is skipped with the reason."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from bench.cli import main
from bench.errors import DataUnsuitable
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL

pytestmark = pytest.mark.skipif(importlib.util.find_spec("scgen") is None, reason="scgen is not installed (install.sh)")


def make_task(smoke, split_name: str) -> Task:
    split = get_split(split_name, smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), max_epochs=2)


@pytest.fixture(scope="module")
def fitted(smoke):
    task = make_task(smoke, "unseen_drug_cell_line")
    reported = []
    task.on_epoch = lambda epoch, stats: reported.append((epoch, stats))
    predictor = registry.create("scGen")
    predictor.fit(task)
    return predictor, task, reported


def test_unavailable_under_unseen_drugs_with_the_reason(smoke):
    task = make_task(smoke, "unseen_drugs")
    cls, _ = registry.predictor_class("scGen")
    reason = cls.unavailable(task)
    held = sorted({c.drug for c in task.test_conditions})
    assert reason is not None and held[0] in reason and "unseen_drug_cell_line" in reason
    with pytest.raises(DataUnsuitable, match="single-cell training cells"):
        registry.create("scGen").fit(task)


def test_reports_every_epoch_and_moves_the_target_cell_types_controls(fitted):
    predictor, task, reported = fitted
    assert [e for e, _ in reported] == [1, 2]
    assert all(np.isfinite(s["loss"]) for _, s in reported)
    for cond in task.test_conditions[:3]:
        controls = task.controls(cond.cell_type)
        pred = predictor.predict(cond, controls)
        assert pred.shape == controls.shape and np.isfinite(pred).all()
        assert not np.allclose(pred, controls, atol=1e-3)


def test_the_shift_is_the_drugs_latent_change_in_the_cell_types_where_it_was_measured(fitted):
    """Latent states read with scgen's own `get_latent_representation`; the held-out cell type has
    no cell of the drug, so the shift comes from the others alone."""
    predictor, task, _ = fitted
    cond = task.test_conditions[0]
    model, obs = predictor.model, task.train.obs
    treated = (obs[DRUG].astype(str) == cond.drug) & (obs[DOSE].astype(float) == cond.dose)
    lines = sorted(set(obs.loc[treated, CELL_TYPE].astype(str)))
    assert lines and cond.cell_type not in lines
    changes = []
    for line in lines:
        in_line = (obs[CELL_TYPE].astype(str) == line).to_numpy()
        drug_rows = np.flatnonzero(in_line & treated.to_numpy())
        control_rows = np.flatnonzero(in_line & (obs[DRUG].astype(str) == CONTROL).to_numpy())
        changes.append(model.get_latent_representation(indices=drug_rows).mean(0) - model.get_latent_representation(indices=control_rows).mean(0))
    np.testing.assert_allclose(predictor.shift(cond.drug, cond.dose), np.mean(changes, axis=0), atol=1e-4)
    batched = predictor.predict_many(task.test_conditions[:4], task.controls)
    for c in task.test_conditions[:4]:
        np.testing.assert_allclose(batched[c], predictor.predict(c, task.controls(c.cell_type)), atol=1e-5)


def test_bench_run_skips_it_under_unseen_drugs_and_runs_it_under_unseen_drug_cell_line(tmp_path):
    for split, status in (("unseen_drugs", "skipped"), ("unseen_drug_cell_line", "ok")):
        out = tmp_path / split
        assert main(["run", "--data", "smoke", "--predictors", "scGen", "--split", split, "--epochs", "2", "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache")]) == 0
        result = json.loads((out / "runs" / "scGen" / "seed0" / "result.json").read_text())
        assert result["status"] == status, result.get("error")
    assert "unseen_drug_cell_line" in json.loads((tmp_path / "unseen_drugs/runs/scGen/seed0/result.json").read_text())["error"]
    assert result["last_epoch"] == 2 and result["trainable"]
