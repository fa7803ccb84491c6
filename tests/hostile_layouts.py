"""Hostile and malformed files built by hand with h5py, in the layouts their publishers write, never
through bench's or anndata's writer:

- h5ad as anndata stores it on disk: root attrs `encoding-type` anndata; `obs`/`var` dataframe groups
  (`_index`, `column-order`), categoricals as `codes` + `categories`, numbers as arrays; `X` a dense
  array or a `csr_matrix` group (`data`, `indices`, `indptr`, attr `shape`); `uns` a dict group.
- GCT 1.2/1.3 text and GCTX (`/0/DATA/0/matrix` stored samples x genes, `/0/META/ROW/id`,
  `/0/META/COL/id`), as cmapPy and cmapR write them.

`cells()` is a small valid single-cell set (CPA-like columns: `condition`, `cell_type`, `dose` in
nM); each hostile file changes one thing of it. `run_cli` runs `bench` on them in a child process
(forked from a server that imported bench once), so a crash in native code is a negative exit code.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

GENES = [f"G{i}" for i in range(6)]
DRUGS = ["control"] * 4 + ["drugA"] * 4 + ["drugB"] * 4
STR = h5py.string_dtype()


def _strings(group: h5py.Group, name: str, values) -> h5py.Dataset:
    ds = group.create_dataset(name, data=np.array([str(v) for v in values], dtype=object), dtype=STR)
    ds.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
    return ds


def _categorical(group: h5py.Group, name: str, values, missing: tuple[int, ...] = ()) -> None:
    """A categorical column; rows in `missing` get code -1 (NaN), as pandas stores a missing label."""
    categories = sorted({str(v) for i, v in enumerate(values) if i not in missing})
    codes = np.array([-1 if i in missing else categories.index(str(v)) for i, v in enumerate(values)], dtype=np.int8)
    col = group.create_group(name)
    col.attrs.update({"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": False})
    col.create_dataset("codes", data=codes).attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    _strings(col, "categories", categories)


def _numbers(group: h5py.Group, name: str, values) -> None:
    ds = group.create_dataset(name, data=np.asarray(values))
    ds.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})


def dataframe(fh: h5py.File, key: str, index, categorical: dict | None = None, numeric: dict | None = None,
              missing: dict | None = None) -> None:
    """An anndata dataframe group: string index, categorical and numeric columns."""
    group = fh.create_group(key)
    columns = [*(categorical or {}), *(numeric or {})]
    group.attrs.update({"encoding-type": "dataframe", "encoding-version": "0.2.0", "_index": "_index"})
    group.attrs.create("column-order", np.array(columns, dtype=object), dtype=STR)
    _strings(group, "_index", index)
    for name, values in (categorical or {}).items():
        _categorical(group, name, values, (missing or {}).get(name, ()))
    for name, values in (numeric or {}).items():
        _numbers(group, name, values)


def values(n_cells: int = len(DRUGS)) -> np.ndarray:
    """Log-normalised-looking expression (non-integer, non-negative), cells x genes, about half zeros."""
    rng = np.random.default_rng(0)
    x = np.round(rng.gamma(1.0, 0.6, (n_cells, len(GENES))), 3).astype(np.float32) + 0.001
    x[rng.random(x.shape) < 0.5] = 0
    return x


def csr_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """data, indices, indptr of a dense matrix in CSR order."""
    rows, cols = np.nonzero(x)
    return x[rows, cols], cols.astype(np.int32), np.r_[0, np.cumsum(np.bincount(rows, minlength=x.shape[0]))].astype(np.int32)


def csr(fh: h5py.Group, data, indices, indptr, shape) -> h5py.Group:
    """X as anndata writes a CSR matrix."""
    group = fh.create_group("X")
    group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0"})
    group.attrs["shape"] = np.asarray(shape, dtype=np.int64)
    group.create_dataset("data", data=np.asarray(data, dtype=np.float32))
    group.create_dataset("indices", data=np.asarray(indices))
    group.create_dataset("indptr", data=np.asarray(indptr))
    return group


def cells(path: Path, x=None, obs: dict | None = None, numeric: dict | None = None, missing: dict | None = None,
          n_obs: int | None = None, uns=None, drugs: list[str] = DRUGS) -> Path:
    """The valid small single-cell h5ad (CSR X), or it with one part replaced: `x(fh)` writes X,
    `obs` (categorical, replacing a numeric column of its name) and `numeric` replace columns,
    `missing` blanks labels, `n_obs` cuts obs, `uns(fh)` fills uns."""
    n = len(drugs) if n_obs is None else n_obs
    categorical = {"condition": drugs, "cell_type": ["A"] * len(drugs), **(obs or {})}
    doses = [0.0 if d == "control" else 1000.0 for d in drugs]
    numbers = {k: v for k, v in {"dose": doses, **(numeric or {})}.items() if k not in categorical}
    with h5py.File(path, "w") as fh:
        fh.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        dataframe(fh, "obs", [f"cell{i}" for i in range(n)], {k: v[:n] for k, v in categorical.items()},
                  {k: v[:n] for k, v in numbers.items()}, missing)
        dataframe(fh, "var", GENES)
        if x is None:
            csr(fh, *csr_parts(values(len(drugs))), (len(drugs), len(GENES)))
        else:
            x(fh)
        group = fh.create_group("uns")
        group.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        if uns is not None:
            uns(group)
    return path


def uns_dict(group: h5py.Group, name: str, items: dict) -> None:
    """A dict in uns as anndata stores one: a group of scalars (numbers, strings) and string arrays."""
    sub = group.create_group(name)
    sub.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
    for key, value in items.items():
        if isinstance(value, list):
            _strings(sub, key, value)
        elif isinstance(value, str):
            sub.create_dataset(key, data=value, dtype=STR).attrs.update({"encoding-type": "string", "encoding-version": "0.2.0"})
        else:
            sub.create_dataset(key, data=value).attrs.update({"encoding-type": "numeric-scalar", "encoding-version": "0.2.0"})


def gct(path: Path, lines: list[str]) -> Path:
    """A GCT text file of these lines (tab-separated fields)."""
    path.write_text("\n".join(lines) + "\n")
    return path


def plate_gct(path: Path, version: str = "#1.3", dims: str | None = None, rows: list[str] | None = None) -> Path:
    """A GCT 1.3 plate over GENES with its compound metadata; `dims` and `rows` replace parts of it."""
    samples = ["s1", "s2", "s3", "s4"]
    head = ["id", "pr_gene_symbol", *samples]
    meta = [["pert_iname", "-666", "DMSO", "DMSO", "drugA", "drugB"], ["pert_type", "-666", "ctl_vehicle", "ctl_vehicle", "trt_cp", "trt_cp"],
            ["cell_id", "-666", "A", "A", "A", "A"], ["pert_dose", "-666", "0.1", "0.1", "1", "1"],
            ["pert_dose_unit", "-666", "%", "%", "µM", "µM"]]
    body = rows if rows is not None else [f"p{i}\t{g}\t" + "\t".join(f"{1 + 0.1 * (i + j):.2f}" for j in range(4))
                                         for i, g in enumerate(GENES)]
    return gct(path, [version, dims or f"{len(GENES)}\t4\t1\t{len(meta)}", "\t".join(head),
                      *("\t".join(m) for m in meta), *body])


def gctx(path: Path, matrix=None, rows: dict | None = None, cols: dict | None = None) -> Path:
    """A GCTX as cmapPy writes it: /0/DATA/0/matrix (samples x genes, float32) and /0/META/ROW and
    COL datasets; `matrix(fh)` writes the matrix, `rows`/`cols` replace metadata datasets (None: left out)."""
    n_samples = 4
    row_meta = {"id": [f"p{i}" for i in range(len(GENES))], "pr_gene_symbol": GENES, **(rows or {})}
    col_meta = {"id": [f"s{i}" for i in range(n_samples)], "pert_iname": ["DMSO", "DMSO", "drugA", "drugB"],
                "pert_type": ["ctl_vehicle", "ctl_vehicle", "trt_cp", "trt_cp"], "cell_id": ["A"] * n_samples,
                "pert_idose": ["-666", "-666", "1 µM", "1 µM"], **(cols or {})}
    with h5py.File(path, "w") as fh:
        if matrix is None:
            fh.create_dataset("0/DATA/0/matrix", data=np.linspace(1, 2, n_samples * len(GENES), dtype=np.float32).reshape(n_samples, -1))
        else:
            matrix(fh)
        for axis, meta in (("ROW", row_meta), ("COL", col_meta)):
            for key, column in meta.items():
                if column is None:  # a column left out
                    continue
                fh.create_dataset(f"0/META/{axis}/{key}", data=np.array([str(v).encode() for v in column]))
    return path


_SERVER = mp.get_context("forkserver")
_SERVER.set_forkserver_preload(["bench.cli"])  # each child starts with bench imported, none of its work done


@dataclass
class Result:
    """How `bench` ended in its child process: exit code (negative: killed by that signal) and output."""

    returncode: int
    stdout: str
    stderr: str


def _bench_child(argv: list[str], cwd: str, out: str, err: str, max_file_bytes: int | None) -> None:
    """In the child: run `bench ARGV` in `cwd` with stdout and stderr in the files `out` and `err`
    (and files limited to `max_file_bytes`, as `ulimit -f` limits them)."""
    os.chdir(cwd)
    if max_file_bytes is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    os.environ.update({"BENCH_WORKERS": "1", "OMP_NUM_THREADS": "1"})
    for fd, name in ((1, out), (2, err)):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    from bench.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_cli(argv: list[str], cwd: Path, timeout: float = 600, max_file_bytes: int | None = None) -> Result:
    """`bench ARGV` in a child process in `cwd`, one thread and one worker."""
    with tempfile.TemporaryDirectory() as logs:
        out, err = os.path.join(logs, "out"), os.path.join(logs, "err")
        child = _SERVER.Process(target=_bench_child, args=([str(a) for a in argv], str(cwd), out, err, max_file_bytes))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
        read = [Path(p).read_text(errors="replace") if Path(p).exists() else "" for p in (out, err)]
    assert child.exitcode is not None
    return Result(child.exitcode, *read)


def shown_lines(stderr: str) -> list[str]:
    """The lines a terminal shows: what follows the last carriage return of each line (a progress
    bar cleared with \\r is not a line), blank ones dropped."""
    return [line.rsplit("\r", 1)[-1] for line in stderr.split("\n") if line.rsplit("\r", 1)[-1].strip()]
