"""Predictors from other packages: the example package in tests/plugin_example, installed into a
temporary folder put on sys.path (never into the environment), registers through the
`bench.predictors` entry point group and then shows in `bench list`, `--predictors all` and `bench run`."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from predictors import BUILTIN, OPT_IN, registry

PLUGIN_SOURCE = Path(__file__).parent / "plugin_example"
PLUGIN_NAME = "dose_shift"
PLUGIN_MODULE = "bench_plugin_example"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example package pip-installed into a private folder (built from a copy, so the source
    tree gets no build/ or egg-info litter)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the example plug-in")
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN_SOURCE, root / "src")
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "--target", str(site), str(source)]
    subprocess.run(cmd, check=True, capture_output=True)
    return site


@pytest.fixture
def plugin(plugin_site, monkeypatch) -> str:
    """The example plug-in visible to importlib.metadata for one test only."""
    monkeypatch.syspath_prepend(str(plugin_site))
    yield PLUGIN_NAME
    sys.modules.pop(PLUGIN_MODULE, None)


def test_entry_point_is_found_only_while_on_path(plugin_site, monkeypatch):
    assert PLUGIN_NAME not in registry.predictor_names()
    with monkeypatch.context() as mp:
        mp.syspath_prepend(str(plugin_site))
        assert PLUGIN_NAME in [ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)]
        assert PLUGIN_NAME in registry.predictor_names()
    sys.modules.pop(PLUGIN_MODULE, None)
    assert PLUGIN_NAME not in registry.predictor_names()


def test_plugin_joins_list_and_all(plugin, capsys):
    names = registry.resolve("all")
    builtin = [n for n in BUILTIN if n not in OPT_IN]
    assert names[: len(builtin)] == builtin and names[-1] == plugin
    cls, options = registry.predictor_class(plugin)
    assert cls.__module__ == PLUGIN_MODULE and cls.trainable and options == {}
    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(plugin))
    assert "example plug-in" in line


def test_plugin_runs_through_bench_run(plugin, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--data", "smoke", "--predictors", f"{plugin},control_mean", "--epochs", "3", "--out", str(out)]) == 0
    result = json.loads((out / "runs" / plugin / "seed0" / "result.json").read_text())
    assert result["status"] == "ok" and result["trainable"], result
    assert result["last_epoch"] == 3 and 1 <= result["val_epoch"] <= 3
    epochs = pd.read_csv(out / "runs" / plugin / "seed0" / "epochs.csv")
    assert list(epochs["epoch"]) == [1, 2, 3] and epochs["train_loss"].is_monotonic_decreasing
    floor = json.loads((out / "runs" / "control_mean" / "seed0" / "result.json").read_text())
    # The learned shift moves predictions towards the treated means: it beats "no change" on `mean`.
    assert result["val_selected"]["mean"] > floor["val_selected"]["mean"]
    assert f"| {plugin} |" in (out / "leaderboard.md").read_text()


def test_broken_plugin_is_listed_and_recorded_not_fatal(tmp_path, monkeypatch, capsys):
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.predictors]\nbroken = no_such_module_for_bench:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["list"]) == 0
    assert "cannot import" in next(line for line in capsys.readouterr().out.splitlines() if "broken" in line)
    out = tmp_path / "run"
    assert main(["run", "--data", "smoke", "--predictors", "broken,control_mean", "--out", str(out)]) == 0
    broken = json.loads((out / "runs" / "broken" / "seed0" / "result.json").read_text())
    assert broken["status"] == "failed" and "no_such_module_for_bench" in broken["error"]
    assert json.loads((out / "runs" / "control_mean" / "seed0" / "result.json").read_text())["status"] == "ok"


def test_all_leaves_out_the_opt_in_predictors_which_run_by_name(capsys):
    """`all` is every registered predictor but the opt-in ones; `all,NAME` adds one; names come once."""
    assert OPT_IN and set(OPT_IN) <= set(BUILTIN)
    everything = registry.resolve("all")
    assert not set(OPT_IN) & set(everything)
    assert registry.resolve(f"all,{OPT_IN[0]}") == [*everything, OPT_IN[0]]
    assert registry.resolve(f"knn,{OPT_IN[0]},knn") == ["knn", OPT_IN[0]]
    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(OPT_IN[0] + " "))
    assert "opt-in: not in `all`" in line
