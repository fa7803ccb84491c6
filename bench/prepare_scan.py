"""The two streamed passes of `bench prepare` over a single-cell matrix too large to read whole:
X read as checked CSR blocks of cells (`CellMatrix`); pass 1 (`scan`) learns whether it holds raw counts,
each cell's library size and the control cells' per-gene moments; pass 2 (`write_cells`) writes the
kept cells x kept genes, log-normalised by each cell's full library size when X holds counts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from bench.data.counts import log_normalise, looks_like_counts, merge_duplicate_genes
from bench.data.hdf5 import check_indices, sparse_parts, sparse_shape
from bench.data.validate import check_expression
from bench.errors import BenchError

DENSE_BLOCK_BYTES = 1 << 29  # a dense X is read in blocks of about this many float32 bytes


class CellMatrix:
    """X of an open h5ad file, read as float32 CSR blocks of cells: a CSR group by slices of its
    indptr (checked whole first; each block's indices checked before scipy sees them), a dense array
    by row slices (fewer rows per block, DENSE_BLOCK_BYTES). CSC cannot be read by cells without
    reading all of it, so it is refused."""

    def __init__(self, fh: h5py.File, path: Path) -> None:
        self.path = path
        elem = self.elem = fh["X"]
        if isinstance(elem, h5py.Dataset):
            if elem.ndim != 2 or elem.dtype.kind not in "biuf":
                raise BenchError(f"{path}: X is a {elem.ndim}-dimensional {elem.dtype} array, expected cells x genes of numbers")
            self.dense, self.shape = True, (int(elem.shape[0]), int(elem.shape[1]))
            return
        kind, _ = sparse_shape(elem, path, "X")
        if kind == "csc":
            raise BenchError(f"{path}: X is stored column by column (CSC), which cannot be read in blocks of cells; "
                             "rewrite it as CSR (adata.X = adata.X.tocsr(); adata.write_h5ad(...)) and prepare that")
        self.dense = False
        _, self.shape, self.indptr = sparse_parts(elem, path, "X")

    def block_rows(self, block_cells: int) -> int:
        """Cells per block: `block_cells`, fewer for a dense X so a block stays near DENSE_BLOCK_BYTES."""
        if not self.dense:
            return block_cells
        return max(1, min(block_cells, DENSE_BLOCK_BYTES // (4 * max(self.shape[1], 1))))

    def read(self, start: int, stop: int) -> sp.csr_matrix:
        """Cells start..stop-1 as a float32 CSR matrix over every gene of the file."""
        if self.dense:
            return sp.csr_matrix(self.elem.astype(np.float32)[start:stop])
        a, b = self.indptr[start], self.indptr[stop]
        data = self.elem["data"].astype(np.float32)[a:b]
        index = np.int32 if b - a < np.iinfo(np.int32).max and self.shape[1] < np.iinfo(np.int32).max else np.int64
        indices = self.elem["indices"][a:b]
        check_indices(indices, self.shape[1], self.path, "X")  # before the cast, which could wrap a wrong index into range
        indices = indices.astype(index, copy=False)  # one index dtype: scipy would copy to the wider one
        indptr = (self.indptr[start : stop + 1] - a).astype(index)
        return sp.csr_matrix((data, indices, indptr), shape=(stop - start, self.shape[1]))

    def blocks(self, block_cells: int, desc: str) -> Iterator[tuple[int, sp.csr_matrix]]:
        """(first cell, block) over every cell, with a progress bar on stderr while it runs."""
        step = self.block_rows(block_cells)
        for start in tqdm(range(0, self.shape[0], step), desc=desc, unit="block", file=sys.stderr, dynamic_ncols=True,
                          leave=False):  # cleared when done or stopped: an error stays the only line
            yield start, self.read(start, min(start + step, self.shape[0]))


@dataclass
class Moments:
    """Per-gene count, sum and sum of squares of expm1(value) over some cells, in float64: the
    mean and variance that scanpy's 'seurat' dispersion uses, accumulated block by block."""

    n_genes: int
    n: int = 0
    s1: np.ndarray = field(init=False)
    s2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.s1, self.s2 = np.zeros(self.n_genes), np.zeros(self.n_genes)

    def add(self, x: sp.csr_matrix) -> None:
        y = np.expm1(x.data).astype(np.float64)  # float32 expm1, as scanpy applies it to a float32 X
        self.s1 += np.bincount(x.indices, weights=y, minlength=self.n_genes)
        self.s2 += np.bincount(x.indices, weights=y * y, minlength=self.n_genes)
        self.n += x.shape[0]

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-gene mean and unbiased variance (R's convention, as scanpy)."""
        n = max(self.n, 1)
        mean = self.s1 / n
        var = np.maximum(self.s2 / n - mean**2, 0.0)
        return mean, (var * (n / (n - 1)) if n > 1 else var)


def most_expressed_columns(codes: np.ndarray, column_sums: np.ndarray) -> np.ndarray:
    """Per symbol (codes: each column's symbol), the column with the largest sum over all cells, the
    first on ties: the column `merge_duplicate_genes` keeps of normalised values, chosen here
    from totals over the whole file rather than over one block."""
    order = np.lexsort((np.arange(len(codes)), -column_sums, codes))
    return order[np.r_[True, np.diff(codes[order]) != 0]]


@dataclass
class Scan:
    """What the first pass over the matrix learns."""

    counts: bool
    totals: np.ndarray | None  # library size per cell (counts)
    columns: np.ndarray  # per symbol, its file column (counts: the first, the others summed in; else the one kept)
    moments: Moments  # per symbol, over control cells


def scan(matrix: CellMatrix, names: pd.Index, is_control: np.ndarray, normalize: str, block_cells: int,
         source: str) -> Scan:
    """Pass 1: whether X holds raw counts (its first block), each cell's library size over every
    gene, and the control cells' moments per symbol of log-normalised values (counts of duplicated
    symbols summed, as `merge_duplicate_genes`; of normalised values the most expressed column)."""
    n_cells, n_cols = matrix.shape
    codes, symbols = pd.factorize(names)
    first = matrix.read(0, min(n_cells, matrix.block_rows(block_cells)))
    counts = looks_like_counts(first)
    if counts and normalize == "none":
        check_expression(ad.AnnData(first), source, log_normalised=True)  # the loader's error for refused counts
    totals = np.zeros(n_cells) if counts else None
    column_sums = None if counts else np.zeros(n_cols)
    moments = Moments(len(symbols) if counts else n_cols)
    for start, block in matrix.blocks(block_cells, "pass 1/2: library sizes, control genes"):
        ctrl = is_control[start : start + block.shape[0]]
        if counts:
            assert totals is not None  # allocated for counts
            totals[start : start + block.shape[0]] = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
            if ctrl.any():
                merged, _ = merge_duplicate_genes(block[ctrl], names, counts=True)
                moments.add(log_normalise(merged, totals=totals[start : start + block.shape[0]][ctrl]))
        else:
            assert column_sums is not None  # allocated for normalised values
            column_sums += np.bincount(block.indices, weights=block.data, minlength=n_cols)
            moments.add(block[ctrl])
    if counts:
        return Scan(True, totals, np.unique(codes, return_index=True)[1], moments)
    assert column_sums is not None  # normalised values: allocated above
    keep = most_expressed_columns(codes, column_sums)
    per_symbol = Moments(len(symbols))
    per_symbol.n, per_symbol.s1, per_symbol.s2 = moments.n, moments.s1[keep], moments.s2[keep]
    return Scan(False, None, keep, per_symbol)


def write_cells(matrix: CellMatrix, names: pd.Index, scanned: Scan, genes: np.ndarray, keep: np.ndarray,
                block_cells: int) -> sp.csr_matrix:
    """Pass 2: the kept cells x kept symbols (`genes`: a mask over symbols), log-normalised by each
    cell's full library size when X holds counts, as they are otherwise."""
    codes, _ = pd.factorize(names)
    if scanned.counts:
        columns = np.flatnonzero(genes[codes])  # every column of a kept symbol, in file order
    else:
        columns = scanned.columns[genes]  # one column per kept symbol, in symbol order
    parts = []
    for start, block in matrix.blocks(block_cells, "pass 2/2: kept cells and genes"):
        rows = keep[start : start + block.shape[0]]
        if not rows.any():
            continue
        x = (block if rows.all() else block[rows])[:, columns]
        if scanned.counts:
            x, _ = merge_duplicate_genes(x, names[columns], counts=True)
            assert scanned.totals is not None  # scan() keeps them for counts
            x = log_normalise(x, totals=scanned.totals[start : start + block.shape[0]][rows])
        x.sort_indices()
        parts.append(x.astype(np.float32, copy=False))
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, int(genes.sum())), dtype=np.float32)
