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
from bench.data.validate import unreadable
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


def read_gct(path: str | Path) -> ad.AnnData:
    """Read a GCT 1.2 or 1.3 text file."""
    path = Path(path)
    with open(path, encoding="latin-1") as fh:
        version = fh.readline().strip()
        dims = fh.readline().split("\t")
    if version not in ("#1.2", "#1.3"):
        raise BenchError(f"{path}: not a GCT file (first line '{version[:20]}', expected #1.2 or #1.3)")
    try:
        n_rows, n_cols = int(dims[0]), int(dims[1])
        n_row_meta, n_col_meta = (int(dims[2]), int(dims[3])) if version == "#1.3" else (1, 0)
    except (ValueError, IndexError):
        raise BenchError(f"{path}: malformed GCT dimension line") from None
    table = read_text_table(path, sep="\t", skiprows=2, header=0, dtype=str, keep_default_na=False)
    ids = table.columns[1 + n_row_meta :]
    if len(ids) != n_cols or len(table) != n_rows + n_col_meta:
        raise BenchError(f"{path}: GCT header announces {n_rows} x {n_cols} but the body does not match")
    col_meta = table.iloc[:n_col_meta].set_index(table.columns[0])[ids].T
    body = table.iloc[n_col_meta:]
    row_meta = body.iloc[:, : 1 + n_row_meta].set_index(table.columns[0])
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


def _decode(values: np.ndarray) -> np.ndarray:
    return np.array([text(v) for v in values], dtype=object)


BLOCK_ROWS = 65_536  # GCTX samples read per block: bounds the float64 -> float32 staging memory


def read_gctx(path: str | Path, var_hook: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> ad.AnnData:
    """Read a GCTX (HDF5) file. `var_hook` may rewrite the gene metadata and drop genes before the
    matrix is read: only the genes it keeps are read, in blocks of samples, as float32 (a full
    Level 3 matrix of 12,328 genes x 1.3M profiles does not fit in memory; its 978 landmarks do)."""
    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise unreadable(path, "HDF5/GCTX", exc) from None
    with fh:
        if "0/DATA/0/matrix" not in fh:
            raise BenchError(f"{path}: no /0/DATA/0/matrix dataset, so not a GCTX file")
        data = fh["0/DATA/0/matrix"]
        meta = {}
        for axis in ("ROW", "COL"):
            group = fh.get(f"0/META/{axis}", {})
            meta[axis] = pd.DataFrame({k: _decode(group[k][()]) if group[k].dtype.kind in "OS" else group[k][()] for k in group})
        rows, cols = meta["ROW"], meta["COL"]
        if data.shape != (len(cols), len(rows)):
            raise BenchError(f"{path}: matrix is {data.shape} but metadata has {len(cols)} columns x {len(rows)} rows")
        obs = _clean(cols.astype(str).set_index("id"))
        var = _clean(rows.astype(str).set_index("id"))
        obs.index.name = var.index.name = None
        if var_hook is not None:
            var = var_hook(var)
        keep = pd.Index(rows["id"].astype(str)).get_indexer(var.index)
        matrix = np.empty((data.shape[0], len(keep)), dtype=np.float32)
        whole = len(keep) == data.shape[1] and np.array_equal(keep, np.arange(data.shape[1]))
        for start in range(0, data.shape[0], BLOCK_ROWS):
            block = data[start : start + BLOCK_ROWS]
            matrix[start : start + len(block)] = block if whole else block[:, keep]
    return ad.AnnData(matrix, obs=obs, var=var)
