"""`bench run --save-predictions`: each run's val-selected test predictions as one h5ad in the input's
layout, reused with its run, and scored back by `bench score` to the run's own per-condition numbers."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.predictions import NO_EPOCH, PREDICTIONS_FILE, UNS_KEY
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from predictors import BUILTIN
from predictors.base import Predictor, Task

PREDICTORS = ["train_mean", "cVAE"]
RUN = ["run", "--data", "smoke", "--epochs", "2"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A small job with saved predictions, and the smoke data as `bench data` writes it."""
    folder = tmp_path_factory.mktemp("saved")
    argv = [*RUN, "--predictors", ",".join(PREDICTORS), "--save-predictions", "--out", str(folder / "out"),
            "--cache-dir", str(folder / "cache")]
    assert main(argv) == 0
    assert main(["data", "--data", "smoke", "--out", str(folder / "data")]) == 0
    return folder


def run_folder(saved: Path, name: str) -> Path:
    return saved / "out" / "runs" / name / "seed0"


def trained_on(folder: Path) -> list[str]:
    """`--training-drugs` naming the run's training drugs, as its saved file records them (bench
    score never takes them from the file by itself: the scored file does not choose its references)."""
    drugs = ad.read_h5ad(folder / PREDICTIONS_FILE).uns[UNS_KEY]["training_drugs"]
    return ["--training-drugs", ",".join(map(str, np.asarray(drugs).ravel()))]


@pytest.mark.parametrize("name", PREDICTORS)
def test_the_file_is_in_the_inputs_layout_with_the_controls_and_where_it_came_from(saved, smoke, name):
    folder = run_folder(saved, name)
    result = json.loads((folder / "result.json").read_text())
    pred = ad.read_h5ad(folder / PREDICTIONS_FILE)
    assert list(pred.obs.columns) == [DRUG, CELL_TYPE, DOSE]
    assert isinstance(pred.obs[DRUG].dtype, pd.CategoricalDtype) and isinstance(pred.obs[CELL_TYPE].dtype, pd.CategoricalDtype)
    assert pred.obs[DOSE].dtype == np.float64 and pred.X.dtype == np.float32 and isinstance(pred.X, np.ndarray)
    assert list(pred.var_names) == list(smoke.sc.var_names) and pred.obs_names.is_unique
    meta = pred.uns[UNS_KEY]
    assert (meta["predictor"], int(meta["seed"]), meta["split"], meta["run_key"]) == (name, 0, "unseen_drugs", result["run_key"])
    assert meta["selection"] == "val_selected"
    assert int(meta["epoch"]) == (result["val_epoch"] if result["val_epoch"] is not None else NO_EPOCH)
    conditions = pd.read_csv(folder / "conditions.csv")
    scored = conditions[conditions["selection"] == "val_selected"]
    treated = pred.obs[pred.obs[DRUG] != CONTROL]
    assert len(treated.groupby([CELL_TYPE, DRUG, DOSE], observed=True)) == len(scored)
    # the controls handed to the predictor: input_size real control cells per cell type, dose 0
    controls = pred[(pred.obs[DRUG] == CONTROL).to_numpy()]
    size = int(meta["input_size"])
    assert controls.obs[CELL_TYPE].value_counts().eq(size).all() and (controls.obs[DOSE] == 0).all()
    real = smoke.sc[(smoke.sc.obs[DRUG] == CONTROL).to_numpy()]
    for ct in controls.obs[CELL_TYPE].unique():
        mine = {row.tobytes() for row in real[(real.obs[CELL_TYPE] == ct).to_numpy()].X.toarray()}
        assert all(row.tobytes() in mine for row in controls[(controls.obs[CELL_TYPE] == ct).to_numpy()].X)


@pytest.mark.parametrize("name", PREDICTORS)
def test_bench_score_reproduces_the_runs_per_condition_scores(saved, name, tmp_path, capsys):
    """The saved file scored against the data reproduces every val-selected row of conditions.csv:
    raw metrics, floors (the controls the run handed the predictor), calibrated and replicate."""
    folder = run_folder(saved, name)
    out = tmp_path / "m.csv"
    assert main(["score", "--truth", str(saved / "data" / "sc.h5ad"), "--pred", str(folder / PREDICTIONS_FILE),
                 "--out", str(out), *trained_on(folder)]) == 0
    assert f"predictions saved by bench run: {name} seed 0" in capsys.readouterr().out
    ours = pd.read_csv(out)
    runs = pd.read_csv(folder / "conditions.csv")
    runs = runs[runs["selection"] == "val_selected"].reset_index(drop=True)
    assert ours[[CELL_TYPE, DRUG]].equals(runs[[CELL_TYPE, DRUG]]) and np.array_equal(ours[DOSE], runs[DOSE])
    assert ours["n_pred"].equals(runs["n_pred"])
    numeric = [c for c in ours.columns if c not in (CELL_TYPE, DRUG)]
    gap = max(np.nanmax(np.abs(ours[c].to_numpy(float) - runs[c].to_numpy(float))) for c in numeric)
    assert gap <= 1e-6, gap
    raw = [c for c in numeric if not c.endswith(("_floor", "_base", "_norm", "_replicate")) and c not in ("n_true", "n_pred", DOSE)]
    assert len(raw) >= 26 and ours[raw].notna().any().all()  # NaN only where a DE-set metric meets an inert condition


class Peaking(Predictor):
    """Validation predictions best at epoch 2 (the training-mean shift, worse by any other factor);
    test predictions the controls plus epoch / 1000, except at epoch 2: every value 0.002, the worst
    test epoch (a constant cell correlates with nothing) and recognisable in the file."""

    trainable = True

    def fit(self, task: Task) -> None:
        treated = [task.cells(c.cell_type, c.drug, c.dose).mean(axis=0) for c in task.training_conditions()]
        self._shift = np.mean(treated, axis=0) - task.controls(task.training_conditions()[0].cell_type).mean(axis=0)
        self._test = set(task.test_conditions)
        for self._epoch in range(1, task.epochs(4) + 1):
            task.report_epoch(self._epoch, loss=float(self._epoch))

    def predict(self, condition, controls):
        if condition in self._test:
            return np.full_like(controls, 0.002) if self._epoch == 2 else controls + self._epoch / 1000
        return controls + (1.0 - 2.0 * abs(self._epoch - 2)) * self._shift[None, :]


def test_the_saved_epoch_is_the_validation_selected_one_not_the_last_or_best_test(saved, tmp_path, monkeypatch, capsys):
    """Of 4 epochs validation selects 2, the test selection another: the file holds epoch 2's test
    cells and scores back to the val_selected rows, not the test_selected ones."""
    monkeypatch.setitem(BUILTIN, "peaking", (f"{__name__}:Peaking", {}))
    out = tmp_path / "out"
    assert main([*RUN[:3], "--epochs", "4", "--patience", "0", "--predictors", "peaking", "--save-predictions",
                 "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    folder = out / "runs" / "peaking" / "seed0"
    result = json.loads((folder / "result.json").read_text())
    assert result["val_epoch"] == 2 and result["best_test_epoch"] != 2 and result["last_epoch"] == 4
    pred = ad.read_h5ad(folder / PREDICTIONS_FILE)
    assert int(pred.uns[UNS_KEY]["epoch"]) == 2
    treated = (pred.obs[DRUG] != CONTROL).to_numpy()
    assert treated.sum() > 0 and np.all(pred.X[treated] == np.float32(0.002))
    assert not np.all(pred.X[~treated] == np.float32(0.002))  # the controls as handed over
    assert main(["score", "--truth", str(saved / "data" / "sc.h5ad"), "--pred", str(folder / PREDICTIONS_FILE),
                 "--out", str(tmp_path / "m.csv"), *trained_on(folder)]) == 0
    ours = pd.read_csv(tmp_path / "m.csv")
    runs = pd.read_csv(folder / "conditions.csv")
    for selection, same in (("val_selected", True), ("test_selected", False)):
        rows = runs[runs["selection"] == selection].reset_index(drop=True)
        gap = np.abs(ours["energy_DE50"] - rows["energy_DE50"]).max()
        assert (gap <= 1e-6) == same, (selection, gap)


@pytest.fixture(scope="module")
def knn_saved(saved) -> Path:
    """knn's run folder with saved predictions (real training cells: non-negative, as cell-eval wants)."""
    out = saved / "knn"
    assert main([*RUN, "--predictors", "knn", "--save-predictions", "--out", str(out), "--cache-dir", str(saved / "cache")]) == 0
    return out / "runs" / "knn" / "seed0"


def test_knns_oversized_sets_are_saved_as_scored_and_their_returned_counts_kept(saved, knn_saved, tmp_path, capsys):
    """knn returns more cells than it was handed controls: the file holds the capped set that was
    scored and records the returned counts, so the round trip still reproduces conditions.csv."""
    folder = knn_saved
    pred = ad.read_h5ad(folder / PREDICTIONS_FILE)
    size = int(pred.uns[UNS_KEY]["input_size"])
    treated = pred.obs[pred.obs[DRUG] != CONTROL]
    assert treated.groupby([CELL_TYPE, DRUG, DOSE], observed=True).size().eq(size).all()
    runs = pd.read_csv(folder / "conditions.csv")
    runs = runs[runs["selection"] == "val_selected"].reset_index(drop=True)
    assert (runs["n_pred"] > size).all()
    assert main(["score", "--truth", str(saved / "data" / "sc.h5ad"), "--pred", str(folder / PREDICTIONS_FILE),
                 "--out", str(tmp_path / "m.csv"), *trained_on(folder)]) == 0
    ours = pd.read_csv(tmp_path / "m.csv")
    numeric = [c for c in ours.columns if c not in (CELL_TYPE, DRUG)]
    assert max(np.nanmax(np.abs(ours[c].to_numpy(float) - runs[c].to_numpy(float))) for c in numeric) <= 1e-6


def test_off_by_default_kept_on_reuse_and_a_run_without_the_file_is_recomputed(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    base = [*RUN, "--predictors", "train_mean,control_mean", "--out", str(out), "--cache-dir", str(cache)]
    file = {name: out / "runs" / name / "seed0" / PREDICTIONS_FILE for name in ("train_mean", "control_mean")}
    assert main(base) == 0
    assert not any(f.exists() for f in file.values())  # off by default
    capsys.readouterr()

    assert main([*base, "--save-predictions"]) == 0
    err = capsys.readouterr().err
    assert "runs: 0 reused (finished, same key), 2 to compute" in err
    assert "train_mean (seed 0): recomputed: it was run without --save-predictions" in err
    assert all(f.is_file() for f in file.values())
    stamps = {name: f.stat().st_mtime_ns for name, f in file.items()}

    assert main([*base, "--save-predictions"]) == 0  # reused with its file
    assert "runs: 2 reused (finished, same key), 0 to compute" in capsys.readouterr().err
    file["control_mean"].unlink()
    assert main([*base, "--save-predictions"]) == 0  # one file gone: that run only
    err = capsys.readouterr().err
    assert "runs: 1 reused (finished, same key), 1 to compute" in err and "control_mean (seed 0): recomputed" in err
    assert file["train_mean"].stat().st_mtime_ns == stamps["train_mean"] and file["control_mean"].is_file()

    assert main(base) == 0  # without the flag: reused, files kept
    assert "runs: 2 reused (finished, same key), 0 to compute" in capsys.readouterr().err
    assert all(f.is_file() for f in file.values()) and file["train_mean"].stat().st_mtime_ns == stamps["train_mean"]


def test_a_failed_write_leaves_the_previous_run_whole(tmp_path, monkeypatch, capsys):
    """Saving is part of the run folder's atomic replacement: a write that fails leaves the run
    folder as it was, with no half-written file or temporary folder."""
    import bench.runner as runner

    out = tmp_path / "out"
    base = [*RUN, "--predictors", "control_mean", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(base) == 0
    folder = out / "runs" / "control_mean" / "seed0"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(path, adata):
        (Path(path) / PREDICTIONS_FILE).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(runner, "write_predictions", broken)
    capsys.readouterr()
    assert main([*base, "--save-predictions"]) == 2  # the OS error as one line, exit code 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "bench run: error: disk full"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["seed0"]


def test_cell_eval_reads_a_saved_file_as_it_is(saved, knn_saved, tmp_path):
    """The saved file is a prediction in cell-eval's pair layout (perturbation column `drug`, control
    label `control`, the controls inside): cell-eval scores it against the truth's same drugs."""
    pytest.importorskip("cell_eval")
    from cell_eval import MetricsEvaluator

    pred = ad.read_h5ad(knn_saved / PREDICTIONS_FILE)
    real = ad.read_h5ad(saved / "data" / "sc.h5ad")
    real = real[real.obs[DRUG].isin(pred.obs[DRUG].unique()).to_numpy()].copy()
    evaluator = MetricsEvaluator(pred, real, control_pert=CONTROL, pert_col=DRUG, num_threads=1, outdir=str(tmp_path / "ce"))
    results, _ = evaluator.compute(profile="minimal")
    assert sorted(results["perturbation"].to_list()) == sorted(set(pred.obs[DRUG]) - {CONTROL})
