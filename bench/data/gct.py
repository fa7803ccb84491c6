"""Readers for the Connectivity Map GCT text (1.2, 1.3) and GCTX (HDF5) matrix formats.

Both return an AnnData with samples as rows (obs: column metadata) and genes/probes as columns
(var: row metadata), float32 values, and L1000's missing-value marker -666 turned into NaN in
metadata. GCTX is read with h5py directly: /0/DATA/0/matrix is stored samples x genes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from bench.data.doses import text
from bench.data.hdf5 import check_memory, dataset, open_hdf5
from bench.errors import BenchError

MISSING = "-666"


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Metadata strings: -666 (and -666.0) become missing; numeric columns become numbers."""
    frame = frame.astype(object).mask(frame.isin([MISSING, "-666.0", "na"]))
    for col in frame.columns:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        if numeric.notna().sum() == frame[col].notna().sum():
            frame[col] = numeric.replace(-666.0, np.nan)
    return frame


def read_text_table(path: Path, **options) -> pd.DataFrame:
    """`pd.read_csv` of a text file in UTF-8, or in Latin-1 for older files (µ as the byte 0xB5)."""
    try:
        return pd.read_csv(path, encoding="utf-8", **options)
    except UnicodeDecodeError:
        return pd.read_csv(path, encoding="latin-1", **options)


def _dimensions(dims: list[str], version: str, path: Path) -> tuple[int, int, int, int]:
    """(rows, columns, row metadata fields, column metadata fields) of a GCT dimension line."""
    try:
        n_rows, n_cols = int(dims[0]), int(dims[1])
        n_row_meta, n_col_meta = (int(dims[2]), int(dims[3])) if version == "#1.3" else (1, 0)
    except (ValueError, IndexError):
        raise BenchError(f"{path}: malformed GCT dimension line {chr(9).join(dims)[:40]!r}: expected rows, columns"
                         + (" and the row and column metadata counts" if version == "#1.3" else "")) from None
    if n_rows < 1 or n_cols < 1 or n_row_meta < 0 or n_col_meta < 0:
        raise BenchError(f"{path}: GCT dimension line declares {n_rows} rows, {n_cols} columns, {n_row_meta} row and "
                         f"{n_col_meta} column metadata fields: expected at least one row and column, no negative count")
    return n_rows, n_cols, n_row_meta, n_col_meta


def _check_lines(path: Path, expected: int, lines: int) -> None:
    """Every line after the dimension line has `expected` tab-separated fields, and there are `lines` of them."""
    with open(path, encoding="latin-1") as fh:
        for _ in range(2):
            fh.readline()
        count = 0
        for number, line in enumerate(fh, start=3):
            if line.strip("\r\n") == "" and number > 3:
                continue
            fields = line.rstrip("\r\n").count("\t") + 1
            if fields != expected:
                raise BenchError(f"{path}: GCT line {number} has {fields} tab-separated field(s), expected {expected} (ragged rows)")
            count += 1
    if count != lines + 1:
        raise BenchError(f"{path}: GCT header announces {lines} row(s) below its column header but the file holds "
                         f"{max(count - 1, 0)}" + ("" if count else " (it ends after its dimension line)"))


def read_gct(path: str | Path) -> ad.AnnData:
    """Read a GCT 1.2 or 1.3 text file, its shape checked line by line before it is parsed."""
    path = Path(path)
    with open(path, encoding="latin-1") as fh:
        version = fh.readline().strip()
        dims = fh.readline().rstrip("\r\n").split("\t")
    if version not in ("#1.2", "#1.3"):
        raise BenchError(f"{path}: not a GCT file (first line '{version[:20]}', expected #1.2 or #1.3)")
    n_rows, n_cols, n_row_meta, n_col_meta = _dimensions(dims, version, path)
    if n_rows * n_cols * 2 > path.stat().st_size:  # a value takes at least a digit and a tab
        raise BenchError(f"{path}: GCT header announces {n_rows:,} x {n_cols:,} values but the file holds only "
                         f"{path.stat().st_size:,} bytes")
    check_memory(path, f"the GCT matrix ({n_rows:,} x {n_cols:,})", n_rows * n_cols * 4)
    _check_lines(path, 1 + n_row_meta + n_cols, n_rows + n_col_meta)
    table = read_text_table(path, sep="\t", skiprows=2, header=0, dtype=str, keep_default_na=False)
    ids = table.columns[1 + n_row_meta :]
    col_meta = table.iloc[:n_col_meta].set_index(table.columns[0])[ids].T
    body = table.iloc[n_col_meta:]
    row_meta = body.iloc[:, : 1 + n_row_meta].set_index(table.columns[0])
    check_unique(pd.Index(row_meta.index), path, "gene (row) id")
    try:
        values = body[ids].to_numpy(dtype=np.float32).T
    except ValueError:
        raise BenchError(f"{path}: GCT matrix holds non-numeric values") from None
    obs = _clean(col_meta) if n_col_meta else pd.DataFrame(index=ids)
    obs.index = pd.Index(ids, name=None)
    row_meta.index.name = None
    if version == "#1.2":
        row_meta = row_meta.rename(columns={row_meta.columns[0]: "description"})
    return ad.AnnData(values, obs=obs, var=_clean(row_meta))


def check_unique(ids: pd.Index, path: Path, what: str) -> None:
    """A one-line error when `ids` repeat a value."""
    dup = ids[ids.duplicated()]
    if len(dup):
        raise BenchError(f"{path}: {len(dup)} {what}(s) appear more than once, e.g. {str(dup[0])!r}; expected one each")


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([text(v) for v in values], dtype=object)


BLOCK_ROWS = 65_536  # GCTX samples read per block: bounds the float64 -> float32 staging memory


def _metadata(fh: h5py.File, axis: str, path: Path, length: int) -> pd.DataFrame:
    """/0/META/<axis> as a table: 1-D datasets of one length (`length`, the matrix's side), with `id`."""
    group = fh.get(f"0/META/{axis}")
    if not isinstance(group, h5py.Group) or "id" not in group:
        raise BenchError(f"{path}: no /0/META/{axis}/id dataset; expected the GCTX {axis.lower()} ids")
    columns = {}
    for key in group:
        ds = dataset(group, key, path, f"{axis.lower()} metadata '{key}'", ndim=1)
        if ds.shape[0] != length:
            raise BenchError(f"{path}: {axis.lower()} metadata '{key}' has {ds.shape[0]:,} values but the matrix has "
                             f"{length:,} {'rows (genes)' if axis == 'ROW' else 'columns (samples)'}"
                             "; expected one value per " + ("gene" if axis == "ROW" else "sample"))
        columns[key] = _decode(ds[()]) if ds.dtype.kind in "OS" else ds[()]
    frame = pd.DataFrame(columns)
    check_unique(pd.Index(frame["id"].astype(str)), path, "gene (row) id" if axis == "ROW" else "sample (column) id")
    return frame


BLOCK_ROWS = 65_536  # GCTX samples read per block: bounds the float64 -> float32 staging memory


def read_gctx(path: str | Path, var_hook: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> ad.AnnData:
    """Read a GCTX (HDF5) file, checked as bench/data/hdf5.py says. `var_hook` may rewrite the gene
    metadata and drop genes before the matrix is read: only the genes it keeps are read, in blocks of
    samples, as float32 (a full Level 3 matrix of 12,328 genes x 1.3M profiles does not fit in
    memory; its 978 landmarks do)."""
    path = Path(path)
    fh, _ = open_hdf5(path, "HDF5/GCTX")
    with fh:
        if "0/DATA/0/matrix" not in fh:
            raise BenchError(f"{path}: no /0/DATA/0/matrix dataset, so not a GCTX file")
        data = dataset(fh, "0/DATA/0/matrix", path, "the matrix", ndim=2)
        if data.dtype.kind not in "biuf":
            raise BenchError(f"{path}: the matrix holds {data.dtype} values, expected numbers")
        rows, cols = _metadata(fh, "ROW", path, data.shape[1]), _metadata(fh, "COL", path, data.shape[0])
        obs = _clean(cols.astype(str).set_index("id"))
        var = _clean(rows.astype(str).set_index("id"))
        obs.index.name = var.index.name = None
        if var_hook is not None:
            var = var_hook(var)
        keep = pd.Index(rows["id"].astype(str)).get_indexer(var.index)
        check_memory(path, f"the matrix ({data.shape[0]:,} samples x {len(keep):,} genes)", data.shape[0] * len(keep) * 4)
        matrix = np.empty((data.shape[0], len(keep)), dtype=np.float32)
        whole = len(keep) == data.shape[1] and np.array_equal(keep, np.arange(data.shape[1]))
        for start in range(0, data.shape[0], BLOCK_ROWS):
            block = data[start : start + BLOCK_ROWS]
            matrix[start : start + len(block)] = block if whole else block[:, keep]
    return ad.AnnData(matrix, obs=obs, var=var)
