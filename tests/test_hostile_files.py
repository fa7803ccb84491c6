"""Hostile and malformed input files (tests/hostile_layouts.py builds each by hand in its publisher's
layout): each is refused by the `bench` command line, run in a child process so that a crash in native
code shows as a negative return code, with exit code 2, exactly one line on stderr naming the file
and what was expected, and nothing written. Every case is a row of docs/data.md's bad-input table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from bench.data.hdf5 import read_sparse
from bench.errors import BenchError
from hostile_layouts import GENES, cells, csr, csr_parts, gct, gctx, plate_gct, run_cli, shown_lines, values

N, DATA, INDICES, INDPTR = len(values()), *csr_parts(values())
SHAPE = (N, len(GENES))


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def check(tmp: Path, sc: Path, bulk: Path | None = None) -> tuple[list[str], Path]:
    """`bench check` on the files, and the file its error must name (the bulk file when given)."""
    return ["check", "--sc", str(sc), *(["--bulk", str(bulk)] if bulk else [])], bulk or sc


def _sc(tmp: Path, **change) -> Path:
    return cells(tmp / "sc.h5ad", **change)


def _x(data=DATA, indices=INDICES, indptr=INDPTR, shape=SHAPE) -> Callable[[h5py.File], None]:
    """X written as a CSR group from these parts."""
    return lambda fh: csr(fh, data, indices, indptr, shape)


def _swap(a: np.ndarray, i: int, j: int) -> np.ndarray:
    a = a.copy()
    a[i], a[j] = a[j], a[i]
    return a


def _huge_dense(fh: h5py.File) -> None:
    """A 100,000 x 131,072 float32 X (49 GiB) of which one 64 x 2,048 chunk is written (about 0.5 MB)."""
    x = fh.create_dataset("X", shape=(100_000, 131_072), dtype=np.float32, chunks=(64, 2048), compression="gzip")
    x[:64, :2048] = np.random.default_rng(0).random((64, 2048), dtype=np.float32)


def _external(fh: h5py.File) -> None:
    raw = Path(fh.filename).with_name("raw.bin")
    raw.write_bytes(values().tobytes())
    fh.create_dataset("X", shape=(N, len(GENES)), dtype=np.float32, external=[(raw.name, 0, raw.stat().st_size)])


def _linked(fh: h5py.File) -> None:
    other = Path(fh.filename).with_name("other.h5")
    with h5py.File(other, "w") as o:
        o.create_dataset("X", data=values())
    fh["X"] = h5py.ExternalLink(other.name, "/X")


def _virtual(fh: h5py.File) -> None:
    other = Path(fh.filename).with_name("other.h5")
    with h5py.File(other, "w") as o:
        o.create_dataset("X", data=values())
    layout = h5py.VirtualLayout(shape=(N, len(GENES)), dtype=np.float32)
    layout[:] = h5py.VirtualSource(other.name, "X", shape=(N, len(GENES)))
    fh.create_virtual_dataset("X", layout)


def _bare_with_empty_side_car(tmp: Path) -> Path:
    """A GEO-style GCTX without sample metadata, and an empty inst_info side-car beside it."""
    gctx(tmp / "plate.gctx", cols={"pert_iname": None})
    (tmp / "plate_inst_info.txt").write_text("")
    return tmp / "plate_inst_info.txt"


GCT_ROWS = [f"p{i}\t{g}\t1.0\t1.1\t1.2\t1.3" for i, g in enumerate(GENES)]

# input -> (builds the files in a folder and returns argv and the file the error names, what the line says)
CASES: dict[str, tuple[Callable[[Path], tuple[list[str], Path]], str]] = {
    "CSR indices out of range": (lambda t: check(t, _sc(t, x=_x(indices=np.where(INDICES == 0, 6, INDICES)))),
                                 "X/indices holds 6, expected indices from 0 to 5"),
    "CSR indptr that decreases": (lambda t: check(t, _sc(t, x=_x(indptr=_swap(INDPTR, 2, 3)))), "X/indptr decreases at entry 3"),
    "CSR indptr not ending at the number of stored values": (lambda t: check(t, _sc(t, x=_x(indptr=np.r_[INDPTR[:-1], INDPTR[-1] - 1]))),
                                                             f"X/indptr runs from 0 to {len(DATA) - 1}, expected 0 to {len(DATA)}"),
    "CSR data and indices of different lengths": (lambda t: check(t, _sc(t, x=_x(indices=INDICES[:-1]))),
                                                  f"X/data has {len(DATA)} values but X/indices {len(DATA) - 1}"),
    "CSR shape declaring a huge matrix": (lambda t: check(t, _sc(t, x=_x(shape=(10**9, 10**9)))),
                                         "X/indptr has 13 entries, expected 1000000001"),
    "a 0.5 MB h5ad declaring a 49 GiB dense X": (lambda t: check(t, _sc(t, x=_huge_dense)),
                                                 "/X declares 100000x131072 values (48.8 GiB) but the file stores"),
    "X shape not obs x var": (lambda t: check(t, _sc(t, n_obs=N - 1)), f"X is {N} x 6 but obs has {N - 1} rows and var 6"),
    "a dataset in external storage": (lambda t: check(t, _sc(t, x=_external)), "/X stores its data in the external file 'raw.bin'"),
    "an HDF5 external link": (lambda t: check(t, _sc(t, x=_linked)), "/X is an external link to other.h5:/X"),
    "a virtual dataset": (lambda t: check(t, _sc(t, x=_virtual)), "/X is a virtual dataset"),
    "missing drug labels": (lambda t: check(t, _sc(t, missing={"condition": (5, 6)})),
                            "drug column 'condition' is empty for 2 row(s) (e.g. row 'cell5')"),
    "a control flag on a drug's rows": (lambda t: check(t, _sc(t, numeric={"control": [1] * 8 + [0] * 4})),
                                        "column 'control' flags 4 row(s) as controls that column 'condition' labels as drug(s) 'drugA'"),
    "an infinite dose": (lambda t: check(t, _sc(t, numeric={"dose": [0.0] * 4 + [np.inf] * 4 + [1000.0] * 4})),
                         "dose column 'dose' holds 'inf': expected a number"),
    "a dose of 1e400 nM": (lambda t: check(t, _sc(t, obs={"dose": ["0"] * 4 + ["1e400 nM"] * 4 + ["1 uM"] * 4})),
                           "dose column 'dose' holds '1e400 nM': expected a number"),
    "GCT with ragged rows": (lambda t: check(t, _sc(t), plate_gct(t / "plate.gct", rows=GCT_ROWS[:-1] + [GCT_ROWS[-1] + "\t9"])),
                             "GCT line 14 has 7 tab-separated field(s), expected 6 (ragged rows)"),
    "GCT with a header only": (lambda t: check(t, _sc(t), gct(t / "plate.gct", ["#1.3", "6\t4\t1\t5", "id\tpr_gene_symbol\ts1\ts2\ts3\ts4"])),
                               "GCT header announces 6 x 4 values but the file holds only 43 bytes"),
    "GCT with a negative metadata count": (lambda t: check(t, _sc(t), plate_gct(t / "plate.gct", dims="6\t4\t-1\t5")),
                                           "GCT dimension line declares 6 rows, 4 columns, -1 row and 5 column metadata fields"),
    "GCT with a duplicated gene id": (lambda t: check(t, _sc(t), plate_gct(t / "plate.gct", rows=GCT_ROWS[:1] + [GCT_ROWS[0].replace("G0", "G1")] + GCT_ROWS[2:])),
                                      "1 gene (row) id(s) appear more than once, e.g. 'p0'"),
    "GCT declaring a huge matrix": (lambda t: check(t, _sc(t), plate_gct(t / "plate.gct", dims="1000000000\t1000000000\t1\t5")),
                                    "GCT header announces 1,000,000,000 x 1,000,000,000 values but the file holds only"),
    "GCTX with a group where the matrix belongs": (lambda t: check(t, _sc(t), gctx(t / "plate.gctx", matrix=lambda fh: fh.create_group("0/DATA/0/matrix"))),
                                                   "the matrix (/0/DATA/0/matrix) is a group, expected a dataset"),
    "GCTX with ragged metadata": (lambda t: check(t, _sc(t), gctx(t / "plate.gctx", cols={"pert_type": ["trt_cp"] * 3})),
                                  "col metadata 'pert_type' has 3 values but the matrix has 4 columns (samples)"),
    "GCTX with a duplicated gene id": (lambda t: check(t, _sc(t), gctx(t / "plate.gctx", rows={"id": ["p0", "p0", "p2", "p3", "p4", "p5"]})),
                                       "1 gene (row) id(s) appear more than once, e.g. 'p0'"),
    "GCTX declaring a huge matrix": (lambda t: check(t, _sc(t), gctx(t / "plate.gctx", matrix=lambda fh: fh.create_dataset(
                                         "0/DATA/0/matrix", shape=(10**6, 12_328), dtype=np.float32, chunks=(1000, 1000), compression="gzip"))),
                                     "/0/DATA/0/matrix declares 1000000x12328 values (45.9 GiB) but the file stores 0 B"),
    "GCTX matrix as an external link": (lambda t: check(t, _sc(t), gctx(t / "plate.gctx", matrix=lambda fh: fh.__setitem__("0/DATA/0/matrix", h5py.ExternalLink("m.h5", "/m")))),
                                        "/0/DATA/0/matrix is an external link to m.h5:/m"),
    "an empty side-car": (lambda t: (check(t, _sc(t), t / "plate.gctx")[0], _bare_with_empty_side_car(t)),
                          "empty or unreadable side-car: expected a tab-separated table with a header line"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_file_is_refused_in_one_line(case, tmp_path):
    make, expected = CASES[case]
    argv, named = make(tmp_path)
    before = files_under(tmp_path)
    result = run_cli(argv, tmp_path)
    lines = shown_lines(result.stderr)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and str(named) in lines[0] and expected in lines[0], lines
    assert files_under(tmp_path) == before


def test_the_valid_file_the_cases_change_loads(tmp_path):
    from bench.data.loaders import load_bulk, load_single_cell

    sc = load_single_cell(cells(tmp_path / "sc.h5ad"))
    assert sc.shape == (N, len(GENES)) and sorted(set(sc.obs["drug"])) == ["control", "drugA", "drugB"]
    for bulk in (plate_gct(tmp_path / "plate.gct"), gctx(tmp_path / "plate.gctx")):
        assert sorted(load_bulk(bulk).obs["dose"]) == [0, 0, 1000, 1000]


def test_sparse_checks_come_before_scipy(tmp_path):
    """The reader's own check refuses what scipy's constructor lets through (it checks neither the
    order of indptr nor the range of indices), so no kernel ever sees it."""
    import scipy.sparse as sp

    bad = np.where(INDICES == 0, 6, INDICES)
    sp.csr_matrix((DATA, bad, INDPTR), shape=(N, len(GENES)))  # accepted by scipy as it is
    path = cells(tmp_path / "sc.h5ad", x=_x(indices=bad))
    with h5py.File(path) as fh, pytest.raises(BenchError, match="expected indices from 0 to 5"):
        read_sparse(fh["X"], path)
