"""A failing or unavailable predictor is recorded with its reason and does not stop the sweep."""

from __future__ import annotations

import json

import numpy as np

import predictors
from bench.cli import main
from predictors.base import Predictor


class Exploding(Predictor):
    """Fails while fitting."""

    def fit(self, task):
        raise RuntimeError("boom in fit")

    def predict(self, condition, controls):
        return controls


class NeedsMissingPackage(Predictor):
    """Declares a package that is not installed."""

    packages = ("surely_not_an_installed_module",)

    def fit(self, task):
        pass

    def predict(self, condition, controls):
        return np.asarray(controls)


def test_failures_are_recorded_and_others_still_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(predictors.BUILTIN, "exploding", (f"{__name__}:Exploding", {}))
    monkeypatch.setitem(predictors.BUILTIN, "needs_pkg", (f"{__name__}:NeedsMissingPackage", {}))
    out = tmp_path / "run"
    assert main(["run", "--data", "smoke", "--predictors", "exploding,needs_pkg,control_mean", "--out", str(out)]) == 0
    failed = json.loads((out / "runs/exploding/seed0/result.json").read_text())
    skipped = json.loads((out / "runs/needs_pkg/seed0/result.json").read_text())
    ok = json.loads((out / "runs/control_mean/seed0/result.json").read_text())
    assert failed["status"] == "failed" and "boom in fit" in failed["error"]
    assert skipped["status"] == "skipped" and "surely_not_an_installed_module" in skipped["error"]
    assert ok["status"] == "ok"
    board = (out / "leaderboard.md").read_text()
    assert "boom in fit" in board and "surely_not_an_installed_module" in board
