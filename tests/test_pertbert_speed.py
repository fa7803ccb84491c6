"""PertBERT speed: one fine-tuning epoch per decoder and one pre-training epoch per Table 1 set.

The suite runs these once as tests (benchmarks disabled). Measure for real with
`pytest --benchmark-enable tests/test_pertbert_speed.py`; PERTBERT_BENCH_DATA=default measures on
the default generated benchmark instead of the smoke one. extra_info records cells (or profiles) per
epoch, so cells/second = that count / the benchmark's mean time.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import pytest

from bench.data import load_default
from bench.schema import CELL_TYPE, DRUG
from predictors import registry
from predictors.base import Task
from predictors.pertbert.pretrain import VARIANT_SETTINGS, pretrain, select_profiles
from splits import get_split
from splits.base import TEST, TRAIN, VAL


@pytest.fixture(scope="module")
def data(smoke):
    size = os.environ.get("PERTBERT_BENCH_DATA", "smoke")
    return smoke if size == "smoke" else load_default(size, seed=0)


@pytest.fixture(scope="module")
def task(data):
    split = get_split("unseen_drugs", data.sc, seed=0)
    obs = data.sc.obs
    return Task(train=data.sc[split.mask(TRAIN)].copy(), bulk=data.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), cache_dir=tempfile.mkdtemp(), max_epochs=1)


@pytest.mark.parametrize("name", ["BERT", "BERT_mlp"])
def test_one_fine_tuning_epoch(benchmark, task, name):
    losses = []
    run = replace(task, on_epoch=lambda epoch, stats: losses.append(stats["loss"]))

    def fit_one_epoch():
        model = registry.create(name, seed=0)
        model.fit(run)
        return model

    model = benchmark(fit_one_epoch)
    benchmark.extra_info["cells_per_epoch"] = len(task.training_conditions()) * model.config["cells_per_condition"]
    assert losses and all(loss > 0 for loss in losses)


@pytest.mark.parametrize("setting", ["whole", "subset", "transfer"])
def test_one_pre_training_epoch(benchmark, data, setting):
    cell_types = sorted(set(data.sc.obs[CELL_TYPE].astype(str)))
    drugs = sorted(set(data.sc.obs[DRUG].astype(str)) - {"control"})
    chosen = replace(VARIANT_SETTINGS[setting], epochs=1)
    model = benchmark(pretrain, data.bulk, chosen, cell_types, drugs)
    benchmark.extra_info["profiles_per_epoch"] = model.metrics["profiles"] - model.metrics["held_out"]
    assert model.metrics["mask_rmse"] > 0
    assert len(select_profiles(data.bulk, chosen.data, cell_types, drugs)) == model.metrics["profiles"]
