"""PertBERT runs are honest about randomness and Table 1 about what it holds out: a run gives the same
predictions whether its checkpoint was just trained or read from the cache, whatever drew on torch's
global generator before, in whichever order predictors run; other seeds give other predictions;
Table 1 holds out whole conditions; two-stage pre-training masks first, then adds the three tasks,
and never shares a checkpoint with one-stage pre-training."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.schema import CELL_TYPE, DOSE, DRUG
from predictors import registry
from predictors.base import Task
from predictors.pertbert import pretrain as pretrain_module
from predictors.pertbert.pretrain import Pretrained, checkpoint_path, hold_out_conditions, pretrain, select_profiles
from predictors.pertbert.settings import TABLE1
from splits import get_split
from splits.base import TEST, TRAIN, VAL

SMALL = {"patch": 8, "width": 32, "layers": 1}
SEED = 3  # not the pre-training seed (0): a model seed that equals it could hide a shared stream


@pytest.fixture(scope="module")
def task(smoke, tmp_path_factory) -> Task:
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), cache_dir=tmp_path_factory.mktemp("cache"), max_epochs=2)


def predictions(name: str, task: Task, seed: int = SEED, **options) -> np.ndarray:
    """Fit `name` directly (no harness re-seeding in between) and stack its test predictions."""
    if "pretrain_epochs" in registry.predictor_class(name)[0].defaults:
        options = {"pretrain_epochs": 1, **options}
    model = registry.create(name, seed=seed, **SMALL, **options)
    model.fit(task)
    conds = task.test_conditions[:4]
    pred = model.predict_many(conds, task.controls)
    return np.concatenate([pred[c] for c in conds])


def draw_global_randomness() -> None:
    torch.rand(1000)
    torch.nn.Linear(64, 64)


def test_cold_and_warm_checkpoint_caches_give_the_same_predictions(task, tmp_path, monkeypatch):
    run = replace(task, cache_dir=tmp_path)
    cold = predictions("BERT_subset", run)
    assert len(list(tmp_path.glob("pertbert/*.pt"))) == 1
    draw_global_randomness()

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the warm run pre-trained instead of reading the cached checkpoint")

    monkeypatch.setattr(pretrain_module, "pretrain", no_pretraining)
    warm = predictions("BERT_subset", run)
    np.testing.assert_array_equal(cold, warm)


def test_predictors_give_the_same_predictions_in_either_order(task, tmp_path):
    """BERT_subset and BERT_subset_mlp share a checkpoint: whichever runs first trains it. The second
    order also draws on the global generator before each fit, as other work in an executor may."""
    names = ("BERT_subset", "BERT_subset_mlp", "BERT_nobulk")
    first = {n: predictions(n, replace(task, cache_dir=tmp_path / "a")) for n in names}
    second = {}
    for n in reversed(names):
        draw_global_randomness()
        second[n] = predictions(n, replace(task, cache_dir=tmp_path / "b"))
    for n in names:
        np.testing.assert_array_equal(first[n], second[n], err_msg=n)


@pytest.mark.parametrize("name", ["BERT", "BERT_subset"])
def test_other_model_seeds_give_other_predictions(task, name):
    a, b = predictions(name, task, seed=0), predictions(name, task, seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, predictions(name, task, seed=0))
    # Before any training step too: the seed reaches the initial weights, not only the order of training.
    untrained = replace(task, max_epochs=0)
    assert not np.array_equal(predictions(name, untrained, seed=0), predictions(name, untrained, seed=1))


# -- Table 1 held out by condition ---------------------------------------------------------------

def conditions(bulk: ad.AnnData, rows: np.ndarray) -> set[tuple]:
    obs = bulk.obs.iloc[rows]
    return set(zip(obs[CELL_TYPE].astype(str), obs[DRUG].astype(str), obs[DOSE].astype(float)))


def test_table1_holds_out_whole_conditions(smoke):
    bulk = ad.concat([smoke.bulk, smoke.bulk], index_unique="-")  # every condition has replicates
    rows = np.arange(bulk.n_obs)
    held, train = hold_out_conditions(bulk.obs, rows, seed=0)
    assert not conditions(bulk, held) & conditions(bulk, train)
    assert np.array_equal(np.sort(np.concatenate([held, train])), rows)
    assert 0.09 <= len(held) / len(rows) <= 0.12
    assert np.array_equal(held, hold_out_conditions(bulk.obs, rows, seed=0)[0])
    assert not np.array_equal(held, hold_out_conditions(bulk.obs, rows, seed=1)[0])
    # pre-training evaluates on exactly that hold-out, and says it is one by condition
    setting = replace(TABLE1["four_task_15_subset"], epochs=0)
    cell_types = sorted(set(smoke.sc.obs[CELL_TYPE].astype(str)))
    model = pretrain(bulk, setting, cell_types, [], cfg_overrides=SMALL)
    expected, _ = hold_out_conditions(bulk.obs, select_profiles(bulk, "subset", cell_types, []), setting.seed)
    assert model.metrics["held_out"] == len(expected)
    assert model.metrics["held_out_conditions"] == len(conditions(bulk, expected)) > 1


# -- two-stage pre-training ----------------------------------------------------------------------

def test_two_stages_mask_first_then_add_the_three_tasks(smoke):
    cell_types = sorted(set(smoke.sc.obs[CELL_TYPE].astype(str)))

    def losses(setting) -> list[float]:
        seen = []
        pretrain(smoke.bulk, setting, cell_types, [], SMALL, progress=lambda epoch, loss: seen.append(loss))
        return seen

    two_stage = losses(replace(TABLE1["four_task_15_subset"], epochs=2, stages=2))
    masking = losses(replace(TABLE1["four_task_15_subset"], epochs=2, four_task=False))
    assert two_stage[0] == masking[0]  # stage 1: the same masked-value training, step for step
    assert two_stage[1] > masking[1] + 0.5  # stage 2 adds the cell-line, drug and dose losses


def test_stages_reach_the_checkpoint_key_and_one_task_settings_keep_one_stage(task, tmp_path):
    four, one = TABLE1["four_task_15_subset"], TABLE1["one_task_15_whole"]
    with pytest.raises(BenchError, match="needs the four tasks"):
        replace(one, stages=2)
    with pytest.raises(BenchError, match="expected 1 or 2"):
        four.with_stages(3)
    assert one.with_stages(2) == one and four.with_stages(2).stages == 2
    args = (tmp_path, task.bulk)
    assert checkpoint_path(*args, four, {}, ["a"], []) != checkpoint_path(*args, four.with_stages(2), {}, ["a"], [])
    run = replace(task, cache_dir=tmp_path, max_epochs=1)
    predictions("BERT_subset", run)
    predictions("BERT_subset", run, pretrain_stages=2)
    stages = sorted(Pretrained.load(p).setting.stages for p in tmp_path.glob("pertbert/*.pt"))
    assert stages == [1, 2]


def test_pretrain_command_takes_stages(tmp_path, capsys):
    assert main(["pretrain", "--data", "smoke", "--epochs", "2", "--stages", "2", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| four-task | 15 | subset | 2 |" in out and "| one-task | 80 | subset | 1 |" in out
    assert "held_out_conditions" in out
