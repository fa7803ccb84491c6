"""Equal budgets: training stops after `--patience` epochs without a validation gain, the selected
epoch's scores are those of the best validation epoch, and `--search` picks options on validation drugs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.cli import main
from predictors import BUILTIN
from predictors.base import Predictor, StopTraining, Task

SEEN: dict[str, list] = {"epochs": [], "swallowed": []}


class Souring(Predictor):
    """The training-mean shift times a factor that turns worse every epoch after the first."""

    trainable = True
    defaults = {"swallow": False}

    def fit(self, task: Task) -> None:
        treated = [task.cells(c.cell_type, c.drug, c.dose).mean(axis=0) for c in task.training_conditions()]
        self._shift = np.mean(treated, axis=0) - task.controls(task.training_conditions()[0].cell_type).mean(axis=0)
        for epoch in range(1, task.epochs(20) + 1):
            self._factor = 1.0 - 2.0 * (epoch - 1)
            SEEN["epochs"].append(epoch)
            try:
                task.report_epoch(epoch, loss=float(epoch))
            except StopTraining:
                if not self.config["swallow"]:
                    raise
                SEEN["swallowed"].append(epoch)

    def predict(self, condition, controls):
        return controls + self._factor * self._shift[None, :]


def test_training_stops_after_patience_and_the_best_validation_epoch_is_kept(tmp_path, monkeypatch):
    monkeypatch.setitem(BUILTIN, "souring", (f"{__name__}:Souring", {}))
    SEEN["epochs"].clear()
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--predictors", "souring", "--patience", "2", "--out", str(out)]) == 0
    result = json.loads((out / "runs/souring/seed0/result.json").read_text())
    epochs = pd.read_csv(out / "runs/souring/seed0/epochs.csv")
    assert result["val_epoch"] == int(epochs.loc[epochs["val_score"].idxmax(), "epoch"]) == 1
    assert result["stopped_early_at"] == 3 and SEEN["epochs"] == [1, 2, 3] and len(epochs) == 3
    conditions = pd.read_csv(out / "runs/souring/seed0/conditions.csv")
    assert set(conditions.loc[conditions["selection"] == "val_selected", "epoch"]) == {1}


def test_no_patience_runs_the_whole_budget_and_a_swallowed_stop_is_not_evaluated_again(tmp_path, monkeypatch):
    monkeypatch.setitem(BUILTIN, "souring", (f"{__name__}:Souring", {}))
    SEEN["epochs"].clear()
    assert main(["run", "--data", "smoke", "--predictors", "souring", "--patience", "0", "--epochs", "4", "--out", str(tmp_path / "a")]) == 0
    assert SEEN["epochs"] == [1, 2, 3, 4]
    monkeypatch.setitem(BUILTIN, "souring", (f"{__name__}:Souring", {"swallow": True}))
    SEEN["epochs"].clear()
    SEEN["swallowed"].clear()
    out = tmp_path / "b"
    assert main(["run", "--data", "smoke", "--predictors", "souring", "--patience", "1", "--epochs", "5", "--out", str(out)]) == 0
    assert SEEN["swallowed"] == [2, 3, 4, 5]
    assert len(pd.read_csv(out / "runs/souring/seed0/epochs.csv")) == 2  # later epochs were never evaluated


class Tunable(Souring):
    """Souring with a search space: the shift's factor."""

    defaults = {"swallow": False, "factor": 1.0}
    search_space = {"factor": [-1.0, 1.0, 0.5]}

    def fit(self, task: Task) -> None:
        treated = [task.cells(c.cell_type, c.drug, c.dose).mean(axis=0) for c in task.training_conditions()]
        self._shift = np.mean(treated, axis=0) - task.controls(task.training_conditions()[0].cell_type).mean(axis=0)
        self._factor = self.config["factor"]
        task.report_epoch(1, loss=0.0)


def test_search_picks_the_candidate_with_the_best_validation_headline_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setitem(BUILTIN, "tunable", (f"{__name__}:Tunable", {}))
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--predictors", "tunable", "--search", "--out", str(out)]) == 0
    result = json.loads((out / "runs/tunable/seed0/result.json").read_text())
    trials = result["search"]["trials"]
    assert [t["options"]["factor"] for t in trials] == [-1.0, 1.0, 0.5]
    best = max(trials, key=lambda t: t["val_headline"])
    assert result["search"]["chosen"] == best["options"] and result["options"]["factor"] == best["options"]["factor"]
    assert best["options"]["factor"] != -1.0  # the opposite of the training effect is never the best
    assert result["search"]["selected_by"] == "validation headline"
    plain = tmp_path / "plain"
    assert main(["run", "--data", "smoke", "--predictors", "tunable", "--out", str(plain)]) == 0
    assert "search" not in json.loads((plain / "runs/tunable/seed0/result.json").read_text())


def test_time_budget_stops_training_and_keys_the_run(tmp_path):
    """`--time-budget` stops at the end of the epoch that spends it (any epoch takes more than a
    microsecond), enters the run key, and leaves runs without a budget as they were."""
    common = ["run", "--data", "smoke", "--predictors", "cVAE", "--patience", "0", "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--epochs", "3", "--out", str(tmp_path / "free")]) == 0
    assert main([*common, "--epochs", "3", "--time-budget", "1e-6", "--out", str(tmp_path / "short")]) == 0
    assert main([*common, "--epochs", "3", "--time-budget", "1e9", "--out", str(tmp_path / "long")]) == 0
    free, short, long = (json.loads((tmp_path / d / "runs" / "cVAE" / "seed0" / "result.json").read_text())
                         for d in ("free", "short", "long"))
    assert free["last_epoch"] == 3 and free["stopped_early_at"] is None
    assert short["last_epoch"] == 1 and short["stopped_early_at"] == 1
    assert long["last_epoch"] == 3 and long["stopped_early_at"] is None
    assert len({free["run_key"], short["run_key"], long["run_key"]}) == 3


def test_time_budget_must_be_positive(tmp_path, capsys):
    assert main(["run", "--data", "smoke", "--predictors", "cVAE", "--time-budget", "0", "--out", str(tmp_path)]) != 0
    assert "--time-budget 0.0: expected a positive number of seconds" in capsys.readouterr().err
