"""A predictor reaches only what the interface hands it: a plug-in that walks every object reachable
from its task and from the controls function finds no test cell, no evaluator and no truth."""

from __future__ import annotations

import gc
import types

import numpy as np
import pytest
import scipy.sparse as sp

from bench.cli import main
from bench.evaluation import Evaluator
from bench.schema import CELL_TYPE, DRUG
from predictors import BUILTIN
from predictors.base import Predictor, Task

FOUND: dict[str, set] = {"rows": set(), "types": set(), "keys": set()}
LIMIT = 300_000  # objects visited per walk


def _is_namespace(obj) -> bool:
    """Module namespaces, classes and modules lead to everything importable: not data handed over."""
    return isinstance(obj, (types.ModuleType, type)) or (isinstance(obj, dict) and "__builtins__" in obj)


def _walk(*roots, found: dict[str, set] = FOUND) -> None:
    """Record in `found` every float row, type name and dict key reachable from `roots` by object references."""
    seen, queue = set(), list(roots)
    while queue and len(seen) < LIMIT:
        obj = queue.pop()
        if id(obj) in seen or _is_namespace(obj):
            continue
        seen.add(id(obj))
        found["types"].add(type(obj).__name__)
        if isinstance(obj, dict):
            found["keys"].update(k for k in obj if isinstance(k, str))
        rows = obj.toarray() if sp.issparse(obj) else obj if isinstance(obj, np.ndarray) else None
        if rows is not None and rows.ndim == 2 and rows.dtype.kind == "f":
            found["rows"].update(r.astype(np.float32).tobytes() for r in rows)
        if isinstance(obj, types.FunctionType):
            queue.extend(c.cell_contents for c in obj.__closure__ or ())
            queue.extend(obj.__defaults__ or ())
            continue
        queue.extend(gc.get_referents(obj))


class Snoop(Predictor):
    """Tries every path it can see from what fit and predict_many receive."""

    def fit(self, task: Task) -> None:
        FOUND["truth_given"] = task.truth is not None
        _walk(task)

    def predict(self, condition, controls):
        return controls

    def predict_many(self, conditions, controls):
        _walk(controls, controls(conditions[0].cell_type))
        return {c: controls(c.cell_type) for c in conditions}


@pytest.mark.parametrize("split_name", ["unseen_drugs", "unseen_drug_cell_line"])
def test_a_snooping_plugin_finds_no_test_cell_evaluator_or_truth(smoke, tmp_path, monkeypatch, split_name):
    monkeypatch.setitem(BUILTIN, "snoop", (f"{__name__}:Snoop", {}))
    for key in ("rows", "types", "keys"):
        FOUND[key].clear()
    assert main(["run", "--data", "smoke", "--split", split_name, "--predictors", "snoop", "--out", str(tmp_path / "out")]) == 0
    assert FOUND["truth_given"] is False
    assert not {"bench_truth", "bench_de"} & FOUND["keys"]
    assert Evaluator.__name__ not in FOUND["types"] and "Sweep" not in FOUND["types"]
    # The held-out drugs' cells, row by row, are nowhere among the rows the plug-in could reach ...
    from splits import get_split

    split = get_split(split_name, smoke.sc, seed=0)
    held_out = split.labels.to_numpy() != "train"
    test_rows = {r.tobytes() for r in np.asarray(smoke.sc.X[np.flatnonzero(held_out)].toarray(), dtype=np.float32)}
    assert test_rows and not test_rows & FOUND["rows"]
    # ... while the walk did reach the data it is entitled to: training cells and the controls.
    controls = smoke.sc.obs[DRUG].astype(str).to_numpy() == "control"
    rows = np.asarray(smoke.sc.X[np.flatnonzero(controls & (smoke.sc.obs[CELL_TYPE] == "CL00").to_numpy())].toarray(), dtype=np.float32)
    assert {r.tobytes() for r in rows} & FOUND["rows"]


def test_truth_reaches_only_predictors_that_declare_it(smoke):
    from bench.runner import RunConfig, make_task

    split = __import__("splits").get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    ev = Evaluator(smoke.sc, split.conditions(obs, "test"))
    oracle_cls = __import__("predictors.oracle", fromlist=["Oracle"]).Oracle
    assert make_task(oracle_cls, smoke, split, ev, None, RunConfig(["oracle"]), 0).truth is not None
    task = make_task(Snoop, smoke, split, ev, None, RunConfig(["snoop"]), 0)
    assert task.truth is None and "bench_truth" not in task.train.uns
    with pytest.raises(KeyError):
        task.train.uns["bench_truth"]


HANDED: list[list] = []


class Recorder(Predictor):
    """Records what it is handed, call by call: the conditions of each batch, in order, and the
    size and content of the controls it receives for each."""

    def fit(self, task: Task) -> None:
        HANDED.append([])

    def predict(self, condition, controls):
        return controls

    def predict_many(self, conditions, controls):
        HANDED[-1].append([(c.key, controls(c.cell_type).shape, controls(c.cell_type).tobytes().__hash__()) for c in conditions])
        return {c: controls(c.cell_type) for c in conditions}


def test_no_side_channel_from_the_test_cells_through_what_is_handed_over(smoke, tmp_path, monkeypatch):
    """Two data sets that differ only in the held-out conditions' cells (most of them removed, so
    their counts change): the predictor is handed the same controls, in the same sizes, batches and
    order, in both runs."""
    from splits import get_split

    monkeypatch.setitem(BUILTIN, "recorder", (f"{__name__}:Recorder", {}))
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    held = (split.labels.to_numpy() != "train")
    drop = held & (np.arange(smoke.sc.n_obs) % 3 != 0)  # two thirds of every held-out condition's cells
    sc = smoke.sc.copy()
    del sc.uns["bench_truth"]
    sc.write_h5ad(tmp_path / "sc.h5ad")
    sc[~drop].copy().write_h5ad(tmp_path / "fewer.h5ad")
    smoke.bulk.write_h5ad(tmp_path / "bulk.h5ad")
    HANDED.clear()
    for name in ("sc", "fewer"):
        argv = ["run", "--sc", str(tmp_path / f"{name}.h5ad"), "--bulk", str(tmp_path / "bulk.h5ad"),
                "--predictors", "recorder", "--out", str(tmp_path / name)]
        assert main(argv) == 0
    assert len(HANDED) == 2 and HANDED[0] and HANDED[0] == HANDED[1]
