"""Bad input: one line naming the file and the problem, exit code 2, nothing half-written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from bench.cli import main
from bench.schema import CELL_TYPE, CONTROL, DRUG


@pytest.fixture(scope="module")
def good(smoke, tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    sc = smoke.sc.copy()
    del sc.uns["bench_truth"]
    sc.write_h5ad(folder / "sc.h5ad")
    smoke.bulk.write_h5ad(folder / "bulk.h5ad")
    return folder, sc


def _variant(good, name, change):
    folder, sc = good
    bad = sc.copy()
    change(bad)
    path = folder / f"{name}.h5ad"
    bad.write_h5ad(path)
    return path


def _dense(adata, fn):
    x = adata.X.toarray()
    fn(x)
    adata.X = sp.csr_matrix(x)


def _drop_controls_of(cell_type):
    def change(a):
        keep = ~((a.obs[CELL_TYPE] == cell_type) & (a.obs[DRUG] == CONTROL)).to_numpy()
        a._inplace_subset_obs(keep)
    return change


def _truncated(source, path):
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _plain_hdf5(path):
    with h5py.File(path, "w") as fh:
        fh["matrix"] = np.zeros((3, 3))
    return path


CASES = {
    "missing file": (lambda g: g[0] / "absent.h5ad", None, "file not found"),
    "not h5ad": (lambda g: (g[0] / "text.h5ad").write_text("hello") and g[0] / "text.h5ad", None, "not a readable h5ad"),
    "truncated HDF5": (lambda g: _truncated(g[0] / "sc.h5ad", g[0] / "cut.h5ad"), None, "not a readable h5ad file"),
    "HDF5 but not h5ad": (lambda g: _plain_hdf5(g[0] / "plain.h5"), None, "not an h5ad file (no X or obs)"),
    "misspelled column": (lambda g: g[0] / "sc.h5ad", ["--drug-key", "drugg"], "did you mean 'drug'"),
    "no controls for a cell type": (lambda g: _variant(g, "noctrl", _drop_controls_of("CL01")), None, "no control cells for cell type(s) CL01"),
    "NaN values": (lambda g: _variant(g, "nan", lambda a: _dense(a, lambda x: x.__setitem__((0, 0), np.nan))), None, "NaN or infinite"),
    "negative values": (lambda g: _variant(g, "neg", lambda a: _dense(a, lambda x: x.__setitem__((0, 0), -1.0))), None, "negative expression values"),
    "raw counts": (lambda g: _variant(g, "counts", lambda a: setattr(a, "X", sp.csr_matrix(np.round(np.expm1(a.X.toarray()))))), None, "look like raw counts"),
    "duplicated genes": (lambda g: _variant(g, "dups", lambda a: setattr(a, "var_names", ["G0000"] + list(a.var_names[1:-1]) + ["G0000"])), None, "duplicated gene symbol"),
    "no shared genes": (lambda g: _variant(g, "othergenes", lambda a: setattr(a, "var_names", [f"X{i}" for i in range(a.n_vars)])), None, "no gene symbol in common"),
    "split without test": (lambda g: _variant(g, "nosplit", lambda a: a.obs.__setitem__("split", "train")), ["--split-column", "split"], "no test conditions"),
    "unknown split": (lambda g: g[0] / "sc.h5ad", ["--split", "unseen_cells"], "unknown split 'unseen_cells'"),
    "unknown predictor": (lambda g: g[0] / "sc.h5ad", ["--predictors", "CPAA"], "unknown predictor 'CPAA' (did you mean 'CPA'?)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, good, tmp_path, capsys):
    make, extra, message = CASES[case]
    sc_path = make(good)
    out = tmp_path / "out"
    argv = ["run", "--sc", str(sc_path), "--bulk", str(good[0] / "bulk.h5ad"), "--predictors", "control_mean", "--out", str(out)]
    argv += extra or []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert not out.exists()  # nothing half-written


def test_bulk_without_sc_is_refused(capsys, tmp_path):
    assert main(["run", "--bulk", str(tmp_path / "x.gct"), "--out", str(tmp_path / "o")]) == 2
    assert "--bulk and --smiles need --sc" in capsys.readouterr().err


BULK_CASES = {
    "missing bulk file": (lambda folder: folder / "absent.gctx", "absent.gctx: file not found"),
    "not a GCT file": (lambda folder: (folder / "x.gct").write_text("#2.0\n1\t1\n") and folder / "x.gct", "not a GCT file"),
    "GCTX without a matrix": (lambda folder: _plain_hdf5(folder / "x.gctx"), "no /0/DATA/0/matrix dataset"),
}


@pytest.mark.parametrize("case", list(BULK_CASES))
def test_bad_bulk_file_is_one_line_and_exit_2(case, good, tmp_path, capsys):
    make, message = BULK_CASES[case]
    out = tmp_path / "out"
    argv = ["run", "--sc", str(good[0] / "sc.h5ad"), "--bulk", str(make(tmp_path)), "--predictors", "control_mean", "--out", str(out)]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert not out.exists()
