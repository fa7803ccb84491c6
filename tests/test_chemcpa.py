"""chemCPA and chemCPA_transfer on the smoke data: they report every epoch, predict every held-out
condition from the controls, represent an unseen drug by its structure (its SMILES decides its
prediction), never train on held-out cells, and skip with the reason when a held-out drug has no
SMILES."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main
from bench.data import Benchmark, synthetic
from bench.errors import DataUnsuitable
from bench.evaluation import Evaluator
from bench.headline import headline
from bench.schema import DRUG
from predictors import registry
from predictors.base import Task
from predictors.chemcpa import ChemCPATransfer
from predictors.chemcpa.transfer import rescale
from predictors.floors import TrainMeanShift
from splits import get_split
from splits.base import TEST, TRAIN, VAL

pytest.importorskip("rdkit")

OTHER = "Clc1ccc(cc1)C(c1ccccc1)N1CCN(CC1)CCOCC(=O)O"  # cetirizine: no drug of the generated set


def with_smiles(bench: Benchmark, changed: dict[str, str | None] | None = None) -> Benchmark:
    """A copy of `bench` whose obs 'smiles' (the generated molecules) has `changed` drugs' replaced."""
    sets = []
    for adata in (bench.sc, bench.bulk):
        adata = adata.copy()
        smiles = adata.obs["smiles"].astype(object)
        drugs = adata.obs[DRUG].astype(str)
        for drug, value in (changed or {}).items():
            smiles[(drugs == drug).to_numpy()] = value
        adata.obs["smiles"] = smiles
        sets.append(adata)
    return Benchmark(sc=sets[0], bulk=sets[1], name=bench.name)


def make_task(bench: Benchmark, epochs: int = 2) -> Task:
    split = get_split("unseen_drugs", bench.sc, seed=0, eligible=bench.hold_out_candidates())
    obs = bench.sc.obs
    return Task(train=bench.sc[split.mask(TRAIN)].copy(), bulk=bench.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), max_epochs=epochs)


def fit(name: str, bench: Benchmark, epochs: int = 2, **options):
    task = make_task(bench, epochs)
    reported = []
    task.on_epoch = lambda epoch, stats: reported.append((epoch, stats))
    predictor = registry.create(name, **options)
    predictor.fit(task)
    return predictor, task, reported


@pytest.fixture(scope="module")
def data(smoke) -> Benchmark:
    return with_smiles(smoke)


@pytest.fixture(scope="module")
def fitted(data):
    return fit("chemCPA", data)


def test_reports_every_epoch_and_predicts_every_held_out_condition(fitted):
    predictor, task, reported = fitted
    assert [e for e, _ in reported] == [1, 2]
    assert reported[1][1]["recon"] < reported[0][1]["recon"]
    conditions = task.test_conditions + task.val_conditions
    predicted = predictor.predict_many(conditions, task.controls)
    assert set(predicted) == set(conditions)
    for c, cells in predicted.items():
        assert cells.shape == (len(task.controls(c.cell_type)), task.train.n_vars)
        assert cells.dtype == np.float32 and np.isfinite(cells).all()


def test_draws_are_seeded_per_condition_around_the_decoder_means(fitted):
    predictor, task, _ = fitted
    conditions = task.test_conditions[::4]
    batched = predictor.predict_many(conditions, task.controls)
    means = predictor.distribution(conditions, task.controls)
    for c in conditions:
        alone = predictor.predict(c, task.controls(c.cell_type))
        np.testing.assert_allclose(batched[c], alone, atol=1e-5)
        assert not np.allclose(alone, means[c][0])
    predictor.config["sample"] = False
    try:
        np.testing.assert_allclose(predictor.predict(conditions[0], task.controls(conditions[0].cell_type)),
                                   means[conditions[0]][0], atol=1e-5)
    finally:
        predictor.config["sample"] = True


def test_an_unseen_drug_is_predicted_from_its_smiles(data, fitted):
    """Another molecule for one test drug changes that drug's prediction only (held-out structures
    never enter training); the same SMILES at the same seed give the same cells."""
    first, task, _ = fitted
    target = task.test_conditions[0].drug
    other = next(c for c in task.test_conditions if c.drug != target)
    same, _, _ = fit("chemCPA", with_smiles(data))
    swapped, _, _ = fit("chemCPA", with_smiles(data, {target: OTHER}))
    for c in (task.test_conditions[0], other):
        controls = task.controls(c.cell_type)
        np.testing.assert_array_equal(same.predict(c, controls), first.predict(c, controls))
    cond = task.test_conditions[0]
    controls = task.controls(cond.cell_type)
    assert not np.allclose(swapped.predict(cond, controls), first.predict(cond, controls), atol=1e-4)
    np.testing.assert_array_equal(swapped.predict(other, task.controls(other.cell_type)),
                                  first.predict(other, task.controls(other.cell_type)))


def test_a_held_out_drug_without_smiles_is_unsuitable_data(data, fitted):
    _, task, _ = fitted
    target = task.val_conditions[0].drug
    with pytest.raises(DataUnsuitable, match=f"no readable SMILES for held-out drug.*{target}"):
        fit("chemCPA", with_smiles(data, {target: None}))
    with pytest.raises(DataUnsuitable, match=target):
        fit("chemCPA", with_smiles(data, {target: "not a molecule"}))


def test_a_training_drug_without_smiles_is_left_out_of_training(data, fitted):
    _, task, _ = fitted
    drug = task.training_conditions()[0].drug
    predictor, _, reported = fit("chemCPA", with_smiles(data, {drug: None}), epochs=1)
    assert predictor.left_out == [drug] and len(reported) == 1


def _run(tmp_path, name: str, sc, bulk, predictors: str) -> dict:
    sc.write_h5ad(tmp_path / f"{name}-sc.h5ad")
    bulk.write_h5ad(tmp_path / f"{name}-bulk.h5ad")
    argv = ["run", "--sc", str(tmp_path / f"{name}-sc.h5ad"), "--bulk", str(tmp_path / f"{name}-bulk.h5ad"),
            "--predictors", predictors, "--epochs", "2", "--out", str(tmp_path / name)]
    assert main(argv) == 0
    return {p: tmp_path / name / "runs" / p / "seed0" for p in predictors.split(",")}


def test_held_out_cells_do_not_reach_training(data, tmp_path):
    """Two single-cell sets that differ only in the held-out conditions' cells (two thirds removed,
    the rest scrambled): chemCPA's training losses are the same at every epoch."""
    split = get_split("unseen_drugs", data.sc, seed=0, eligible=data.hold_out_candidates())
    held = np.flatnonzero(split.labels.to_numpy() != "train")
    sc = data.sc.copy()
    del sc.uns["bench_truth"]
    other = sc.copy()
    x = other.X.toarray()
    x[held] = x[held[::-1]]
    other.X = sp.csr_matrix(x)
    other = other[~np.isin(np.arange(other.n_obs), held[np.arange(held.size) % 3 != 0])].copy()
    losses = []
    for name, adata in (("all", sc), ("fewer", other)):
        run = _run(tmp_path, name, adata, data.bulk, "chemCPA")["chemCPA"]
        epochs = pd.read_csv(run / "epochs.csv")
        losses.append(epochs[["epoch", "train_recon", "train_adv_loss"]].to_numpy())
    assert losses[0].shape == (2, 3)
    np.testing.assert_array_equal(losses[0], losses[1])


def test_the_harness_skips_a_held_out_drug_without_smiles_with_the_reason(data, tmp_path):
    split = get_split("unseen_drugs", data.sc, seed=0, eligible=data.hold_out_candidates())
    target = split.drugs(data.sc.obs, TEST)[0]
    bench = with_smiles(data, {target: None})
    del bench.sc.uns["bench_truth"]
    run = _run(tmp_path, "missing", bench.sc, bench.bulk, "chemCPA")["chemCPA"]
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "skipped" and target in result["error"] and "SMILES" in result["error"]


class Snapshot(ChemCPATransfer):
    """chemCPA_transfer keeping its weights before and after bulk pre-training."""

    def _before_single_cell(self, task: Task) -> None:
        self.initial = copy.deepcopy(self.module.state_dict())
        super()._before_single_cell(task)
        self.pretrained = copy.deepcopy(self.module.state_dict())


def test_transfer_pretrains_on_bulk_genes_and_fine_tunes(data):
    task = make_task(data, epochs=1)
    predictor = Snapshot(bulk_epochs=2)
    predictor.fit(task)
    assert len(predictor.bulk_stats) == 2
    genes = np.asarray(task.genes)
    shared = np.isin(genes, np.asarray(data.bulk.var_names))
    assert shared.any() and (~shared).any()
    before, after = predictor.initial, predictor.pretrained
    first, last = "encoder.0.weight", f"decoder.{len(predictor.module.decoder) - 1}"
    n = len(genes)
    out_rows = np.concatenate([np.flatnonzero(~shared), n + np.flatnonzero(~shared)])  # means, then variances
    # Single-cell-only genes get no gradient in pre-training: their weights start fine-tuning untrained.
    np.testing.assert_array_equal(after[first][:, ~shared].numpy(), before[first][:, ~shared].numpy())
    np.testing.assert_array_equal(after[f"{last}.weight"][out_rows].numpy(), before[f"{last}.weight"][out_rows].numpy())
    assert not np.allclose(after[first][:, shared].numpy(), before[first][:, shared].numpy())
    rows, _ = predictor._bulk_rows(task)
    pretrained_on = set(predictor.structures.drugs[rows.drug[rows.drug >= 0].numpy()])
    held_out = {c.drug for c in task.test_conditions + task.val_conditions}
    assert held_out <= pretrained_on and len(pretrained_on) > len(set(task.train.obs[DRUG].astype(str)))
    predictor.config["bulk_held_out"] = False
    rows, _ = predictor._bulk_rows(task)
    assert not held_out & set(predictor.structures.drugs[rows.drug[rows.drug >= 0].numpy()])
    cond = task.test_conditions[0]
    pred = predictor.predict(cond, task.controls(cond.cell_type))
    assert pred.shape == (len(task.controls(cond.cell_type)), n) and np.isfinite(pred).all()


def test_bulk_profiles_are_rescaled_to_the_single_cell_controls():
    rng = np.random.default_rng(0)
    reference = rng.normal(5.0, 2.0, size=(50, 3))
    target = rng.normal(0.5, 0.3, size=(40, 3))
    moved = rescale(reference, reference, target)
    np.testing.assert_allclose(moved.mean(axis=0), target.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(moved.std(axis=0), target.std(axis=0), rtol=1e-4)
    constant = rescale(np.ones((4, 1)), np.ones((4, 1)), np.full((4, 1), 3.0))
    np.testing.assert_allclose(constant, 3.0)


def _structure_headlines(weight: float, seeds: tuple[int, ...], monkeypatch) -> tuple[float, float]:
    """Mean test headline of chemCPA over `seeds`, and train_mean's, on small generated data (easy
    preset, 40 single-cell drugs) whose drug effects take a share `weight` from the molecules."""
    monkeypatch.setitem(synthetic.SIZES, "probe", replace(synthetic.SIZES["smoke"], n_sc_drugs=40, n_bulk_drugs=40))
    sc, bulk = synthetic.generate("probe", 0, "easy", structure_weight=weight)
    bench = Benchmark(sc=sc, bulk=bulk, name="probe")
    split = get_split("unseen_drugs", sc, seed=0, eligible=bench.hold_out_candidates())
    ev = Evaluator(sc, split.conditions(sc.obs, TEST))
    task = Task(train=sc[split.mask(TRAIN)].copy(), bulk=bulk, test_conditions=ev.conditions, val_conditions=[],
                max_epochs=20)

    def score(predictor) -> float:
        predictor.fit(task)
        return headline(ev.score({c: predictor.predict(c, ev.controls_for(c)) for c in ev.conditions}, replicate=False))

    chem = np.mean([score(registry.create("chemCPA", seed=s, batch_size=64)) for s in seeds])
    return float(chem), score(TrainMeanShift())


@pytest.mark.slow
def test_the_unseen_drug_headline_rises_with_the_share_of_effect_set_by_structure(monkeypatch):
    """Effects that follow the molecules (structure_weight 1) are predicted from the molecules; with
    effects that ignore them (0) chemCPA is no better than train_mean."""
    seeds = (0, 1)
    ignored, floor = _structure_headlines(0.0, seeds, monkeypatch)
    followed, _ = _structure_headlines(1.0, seeds, monkeypatch)
    assert ignored <= floor
    assert followed > ignored + 0.05
