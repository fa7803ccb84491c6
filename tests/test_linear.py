"""`linear`: ridge from bulk signatures to single-cell mean changes, its path chosen like epochs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cli import main
from bench.evaluation import Evaluator
from bench.headline import headline
from predictors.base import Task
from predictors.floors import TrainMeanShift
from predictors.linear import LinearBulk
from splits import get_split
from splits.base import TEST, TRAIN


@pytest.fixture(scope="module")
def setup(smoke):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    ev = Evaluator(smoke.sc, split.conditions(smoke.sc.obs, TEST))
    task = Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=ev.conditions, val_conditions=[])
    return ev, task


def predictions(model, ev):
    return {c: model.predict(c, ev.controls_for(c)) for c in ev.conditions}


def test_strongest_regularisation_is_train_mean(setup):
    ev, task = setup
    linear, floor = LinearBulk(alphas=(1e9,)), TrainMeanShift()
    linear.fit(task)
    floor.fit(task)
    a, b = predictions(linear, ev), predictions(floor, ev)
    for c in ev.conditions:
        np.testing.assert_allclose(a[c], b[c], atol=1e-4)


def test_bulk_signatures_carry_the_response_on_easy_data(setup):
    """On the easy preset bulk mirrors single cell: a lightly regularised fit beats train_mean."""
    ev, task = setup
    linear, floor = LinearBulk(alphas=(0.01,)), TrainMeanShift()
    linear.fit(task)
    floor.fit(task)
    assert headline(ev.score(predictions(linear, ev), replicate=False)) > headline(ev.score(predictions(floor, ev), replicate=False)) + 0.05


def test_each_epoch_is_one_penalty_and_the_run_records_them(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--predictors", "linear", "--out", str(out)]) == 0
    result = json.loads((out / "runs/linear/seed0/result.json").read_text())
    assert result["status"] == "ok" and result["trainable"]
    epochs = (out / "runs/linear/seed0/epochs.csv").read_text().splitlines()
    assert len(epochs) - 1 == len(LinearBulk.defaults["alphas"]) or result["stopped_early_at"]
