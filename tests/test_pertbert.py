"""PertBERT: pre-training helps, fine-tuning learns, unseen drugs use the pre-trained encoder,
checkpoints round-trip and are reused, the variants run through the CLI, an epoch covers every
training cell once, the ablation without bulk knowledge never reads the bulk set, and a GPU is used
only where there is one."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.schema import CELL_TYPE, DRUG
from predictors import registry
from predictors.base import Task, dense
from predictors.pertbert import predictor as predictor_module
from predictors.pertbert.batches import EpochPlanner
from predictors.pertbert.device import gpu_request, resolve_device
from predictors.pertbert.model import EncoderConfig, LSTMDecoder
from predictors.pertbert.predictor import energy_distance
from predictors.pertbert.pretrain import Pretrained, checkpoint_path, pretrain
from predictors.pertbert.settings import TABLE1
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


# -- fine-tuning epochs, losses, decoder ---------------------------------------------------------

def test_an_epoch_covers_every_treated_cell_once_and_every_control():
    rng = np.random.default_rng(0)
    condition_type = np.array([0, 0, 1, 1, 2])
    cell_condition = rng.permutation(np.repeat(np.arange(5), [25, 70, 12, 33, 40]))
    controls = [np.arange(0, 50), np.arange(50, 60), np.arange(60, 140)]
    control_type = np.repeat([0, 1, 2], [50, 10, 80])
    planner = EpochPlanner(cell_condition, condition_type, controls, cells_per_chunk=32, chunks_per_step=3)
    epoch = planner.epoch(rng)
    targets = np.concatenate([s.targets[s.valid] for s in epoch.steps])
    assert np.array_equal(np.sort(targets), np.arange(len(cell_condition)))  # each treated cell once
    pooled = np.concatenate([s.pool for s in epoch.steps])
    assert set(pooled) == set(range(140)) and epoch.cells == len(cell_condition) + 140
    for s in epoch.steps:
        assert s.valid.sum(1).max() <= 32
        for chunk, cond in enumerate(s.chunk_condition):
            assert (cell_condition[s.targets[chunk][s.valid[chunk]]] == cond).all()
            sources = s.pool[s.sources[chunk][s.valid[chunk]]]
            assert (control_type[sources] == condition_type[cond]).all()
            if len(controls[condition_type[cond]]) >= len(sources):  # else some controls must repeat
                assert len(set(sources)) == len(sources)


def test_energy_distance_ignores_padding_and_matches_cdist():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 6, 30, generator=gen), torch.randn(2, 6, 30, generator=gen) + 0.5
    n = torch.tensor([6, 4])  # the second pair of sets has 4 members, 2 padding rows
    weight = (torch.arange(6)[None] < n[:, None]).float() / n[:, None]
    expected = [2 * torch.cdist(x[:k], y[:k]).mean() - torch.cdist(x[:k], x[:k]).mean() - torch.cdist(y[:k], y[:k]).mean()
                for x, y, k in zip(a, b, n.tolist())]
    assert torch.allclose(energy_distance(a, b, weight), torch.stack(expected).mean(), atol=1e-4)


def test_lstm_decoder_reads_each_step_state_and_input_through_its_own_projection():
    decoder = LSTMDecoder(width=16, n_out=50, steps=4, hidden=8)
    z = torch.randn(3, 16)
    with torch.no_grad():
        u = decoder.inp(z)[None] + decoder.step_embedding[:, None]
        h, _ = decoder.lstm(u)
        per_step = [torch.cat([h[s], u[s]], dim=1) @ decoder.out_weight[s] + decoder.out_bias[s] for s in range(4)]
        assert torch.allclose(decoder(z), torch.cat(per_step, dim=1)[:, :50], atol=1e-5)


def test_faster_training_still_learns(task, smoke):
    """Training-condition error of the mean change falls; held-out drugs beat the control floor."""
    train_conds = task.training_conditions()
    model = registry.create("BERT", seed=0, epochs=10)

    def error(conds, source):
        pred = model.predict_many(conds, task.controls)
        base = {ct: task.controls(ct).mean(0) for ct in {c.cell_type for c in conds}}
        true = [source.cells(c.cell_type, c.drug, c.dose).mean(0) - base[c.cell_type] for c in conds]
        got = [pred[c].mean(0) - base[c.cell_type] for c in conds]
        r = np.mean([np.corrcoef(g, t)[0, 1] for g, t in zip(got, true)])
        return np.mean([((g - t) ** 2).mean() for g, t in zip(got, true)]), np.mean([(t ** 2).mean() for t in true]), r

    errors = []
    run = replace(task, max_epochs=None, on_epoch=lambda epoch, stats: errors.append(error(train_conds, task)[0]))
    model.fit(run)
    assert len(errors) == 10 and errors[-1] < 0.8 * errors[0]
    held_out = Task(train=smoke.sc, bulk=None, test_conditions=[], val_conditions=[])
    err, floor, r = error(task.test_conditions, held_out)
    assert err < 0.9 * floor and r > 0.2  # the control floor predicts no change: error = floor, r undefined


def test_batched_prediction_equals_one_condition_at_a_time(task, monkeypatch):
    model = registry.create("BERT", seed=0, epochs=2)
    model.fit(task)
    conds = task.test_conditions[:5]
    monkeypatch.setattr(predictor_module, "PREDICT_ROWS", 2 * len(task.controls(conds[0].cell_type)))  # chunks of 2
    together = model.predict_many(conds, task.controls)
    for c in conds:
        np.testing.assert_allclose(together[c], model.predict(c, task.controls(c.cell_type)), rtol=1e-4, atol=1e-4)
        assert np.isfinite(together[c]).all() and together[c].shape == task.controls(c.cell_type).shape  # clipped by the harness


# -- the ablation without bulk knowledge ---------------------------------------------------------

class Untouchable:
    """A bulk set that fails the moment anything reads it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"bulk.{name} was read")


@pytest.mark.parametrize("bulk", [None, Untouchable()], ids=["no-bulk", "untouchable-bulk"])
def test_nobulk_never_reads_bulk_and_gives_every_held_out_drug_one_vector(task, bulk):
    run = replace(task, bulk=bulk, max_epochs=3)
    cls, options = registry.predictor_class("BERT_nobulk")
    assert cls.unavailable(replace(task, bulk=None)) is None
    model = cls(seed=0, **options)
    model.fit(run)
    trained = sorted({c.drug for c in task.training_conditions()})
    held_out = sorted({c.drug for c in task.test_conditions + task.val_conditions} - set(trained))
    vectors = model.drug_vectors(held_out)
    assert len(held_out) >= 2 and np.array_equal(vectors, np.repeat(vectors[:1], len(held_out), axis=0))
    np.testing.assert_allclose(vectors[0], model.drug_vectors(trained).mean(0), rtol=1e-5, atol=1e-6)
    assert len(np.unique(model.drug_vectors(trained), axis=0)) == len(trained)  # training drugs keep their own
    # Two held-out drugs at the same cell type and dose get the same predictions.
    first, *others = task.test_conditions
    twin = next(c for c in others if c.cell_type == first.cell_type and c.dose == first.dose and c.drug != first.drug)
    pred = model.predict_many([first, twin], task.controls)
    np.testing.assert_array_equal(pred[first], pred[twin])


def test_nobulk_is_among_all_predictors_and_runs_through_the_cli(tmp_path):
    assert "BERT_nobulk" in registry.resolve("all")
    assert registry.predictor_class("BERT")[0].unavailable(Task(train=None, bulk=None, test_conditions=[], val_conditions=[]))
    out = tmp_path / "run"
    argv = ["run", "--data", "smoke", "--predictors", "BERT_nobulk", "--epochs", "2", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 0
    result = json.loads((out / "runs" / "BERT_nobulk" / "seed0" / "result.json").read_text())
    assert result["status"] == "ok", result
    assert result["best_test_epoch"] in (1, 2) and "pretrain" not in result["options"]


# -- devices -------------------------------------------------------------------------------------

def test_a_gpu_is_asked_for_and_used_only_where_torch_sees_one(monkeypatch):
    assert registry.predictor_class("BERT")[0].resources == gpu_request()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_request() == {"num_gpus": 1} and resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_request() == {} and resolve_device("auto").type == "cpu"
    with pytest.raises(BenchError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fine_tuning_and_prediction_run_on_the_gpu(task):
    model = registry.create("BERT", seed=0, epochs=2, device="cuda")
    model.fit(task)
    assert all(p.device.type == "cuda" for p in model.model.parameters())
    cond = task.test_conditions[0]
    pred = model.predict(cond, task.controls(cond.cell_type))
    assert isinstance(pred, np.ndarray) and pred.shape == task.controls(cond.cell_type).shape and np.isfinite(pred).all()


def test_checkpoint_key_holds_the_resolved_encoder_shape(smoke, names, tmp_path):
    setting = TABLE1["four_task_15_subset"]
    default_patch = EncoderConfig(n_genes=smoke.bulk.n_vars).patch
    implicit = checkpoint_path(tmp_path, smoke.bulk, setting, {}, *names)
    assert implicit == checkpoint_path(tmp_path, smoke.bulk, setting, {"patch": default_patch}, *names)
    assert implicit != checkpoint_path(tmp_path, smoke.bulk, setting, {"patch": default_patch + 1}, *names)
