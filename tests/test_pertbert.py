"""PertBERT: pre-training helps, fine-tuning learns, unseen drugs use the pre-trained encoder,
checkpoints round-trip and are reused, and the variants run through the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.schema import CELL_TYPE, DRUG
from predictors import registry
from predictors.base import Task, dense
from predictors.pertbert.pretrain import TABLE1, Pretrained, checkpoint_path, pretrain, pretrained
from splits import get_split
from splits.base import TEST, TRAIN, VAL

SMALL = {"patch": 8, "width": 32, "layers": 1}


@pytest.fixture(scope="module")
def names(smoke):
    cell_types = sorted(set(smoke.sc.obs[CELL_TYPE].astype(str)))
    drugs = sorted(set(smoke.sc.obs[DRUG].astype(str)) - {"control"})
    return cell_types, drugs


def test_pretraining_beats_an_untrained_encoder_on_held_out_profiles(smoke, names):
    setting = replace(TABLE1["one_task_15_whole"], epochs=8)
    trained = pretrain(smoke.bulk, setting, *names, cfg_overrides=SMALL)
    untrained = pretrain(smoke.bulk, replace(setting, epochs=0), *names, cfg_overrides=SMALL)
    assert trained.metrics["held_out"] == untrained.metrics["held_out"] > 0
    assert trained.metrics["mask_rmse"] < 0.9 * untrained.metrics["mask_rmse"]


def test_four_task_reports_every_table1_column(smoke, names):
    model = pretrain(smoke.bulk, replace(TABLE1["four_task_15_subset"], epochs=3), *names, cfg_overrides=SMALL)
    assert {"cell_acc", "drug_acc", "dose_rmse", "mask_rmse"} <= set(model.metrics)
    assert 0.0 <= model.metrics["drug_acc"] <= 1.0 and model.metrics["dose_rmse"] > 0


def test_checkpoint_round_trips_exactly(smoke, names, tmp_path):
    model = pretrain(smoke.bulk, replace(TABLE1["four_task_15_subset"], epochs=1), *names, cfg_overrides=SMALL)
    model.save(tmp_path / "ckpt.pt")
    again = Pretrained.load(tmp_path / "ckpt.pt")
    x = torch.from_numpy(model.standardise(dense(smoke.bulk.X[:50])))
    model.encoder.eval(), again.encoder.eval()
    with torch.no_grad():
        assert torch.equal(model.encoder.embed(x), again.encoder.embed(x))
        assert torch.equal(model.heads(model.encoder(x))["drug"], again.heads(again.encoder(x))["drug"])
    assert again.metrics == model.metrics and list(again.genes) == list(model.genes)


@pytest.fixture(scope="module")
def task(smoke, tmp_path_factory):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=smoke.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), cache_dir=tmp_path_factory.mktemp("cache"), max_epochs=6)


def test_fine_tuning_loss_falls_and_unseen_drugs_use_the_pretrained_encoder(task, names):
    losses = []
    task.on_epoch = lambda epoch, stats: losses.append(stats["loss"])
    model = registry.create("BERT_subset", seed=0, pretrain_epochs=2, **SMALL)
    model.fit(task)
    assert len(losses) == 6 and np.mean(losses[-2:]) < losses[0]
    # The held-out drug's representation is exactly what the cached pre-trained encoder makes of its bulk profiles.
    setting = replace(TABLE1["four_task_15_subset"], epochs=2)
    drugs = sorted({c.drug for c in task.training_conditions() + task.test_conditions + task.val_conditions})
    path = checkpoint_path(task.cache_dir, task.bulk, setting, SMALL, names[0], drugs)
    assert path.exists()
    expected = model.drug_representations(Pretrained.load(path), task.bulk, drugs, task.control)
    test_drug = task.test_conditions[0].drug
    np.testing.assert_allclose(model.drug_reps[test_drug] * model.drug_scale, expected[test_drug], rtol=1e-5, atol=1e-6)
    assert np.abs(expected[test_drug]).max() > 0
    # Predictions keep single-cell heterogeneity: one predicted cell per control, not one mean.
    cond = task.test_conditions[0]
    pred = model.predict(cond, task.controls(cond.cell_type))
    assert pred.shape == task.controls(cond.cell_type).shape and pred.std(axis=0).mean() > 0.1


def test_variants_run_through_the_cli_and_reuse_checkpoints(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["run", "--data", "smoke", "--predictors", "BERT_subset,BERT_mlp", "--epochs", "2", "--out", str(out), "--cache-dir", str(cache)]
    assert main(argv) == 0
    for name in ("BERT_subset", "BERT_mlp"):
        result = json.loads((out / "runs" / name / "seed0" / "result.json").read_text())
        assert result["status"] == "ok", result
        assert result["best_test_epoch"] in (1, 2) and result["seconds_per_epoch"] > 0
    ckpts = sorted(cache.glob("pertbert/*.pt"))
    assert len(ckpts) == 1  # only BERT_subset pre-trains; BERT starts untrained
    stamp = ckpts[0].stat().st_mtime_ns
    assert main(argv[:4] + ["BERT_subset"] + argv[5:]) == 0
    assert ckpts[0].stat().st_mtime_ns == stamp  # the second run reused the checkpoint


def test_pretrain_command_prints_table1(tmp_path, capsys):
    assert main(["pretrain", "--data", "smoke", "--epochs", "1", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "t1.csv")]) == 0
    out = capsys.readouterr().out
    assert "| four-task | 15 | subset |" in out and "| one-task | 80 | subset |" in out
    assert (tmp_path / "t1.csv").exists()
