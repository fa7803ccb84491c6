"""Expression as publishers ship it: raw integer UMI counts (scPerturb's sci-Plex3) become log1p of
counts per 10,000, as scanpy's `normalize_total(target_sum=1e4)` then `log1p` compute them, and gene
symbols listed more than once (one symbol, several Ensembl ids) become one gene.

Both work on dense arrays and CSR matrices, in place where they can, so a large file is never copied
at full precision."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

TARGET_SUM = 1e4  # counts per cell after normalisation (scanpy's and Seurat's usual choice)
COUNT_MIN_MAX = 2.0  # integers reaching at least this are counts (0/1 values could be a binarised matrix)
SAMPLE = 1_000_000  # stored values inspected for the integer check
NORMALIZE_CHOICES = ("auto", "none")  # --normalize: auto normalises raw counts, none refuses them


def stored_values(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    """The stored values of a matrix (a sparse matrix's non-zeros; a dense array flattened)."""
    return np.asarray(x.data if sp.issparse(x) else np.asarray(x).ravel())


def looks_like_counts(x: np.ndarray | sp.spmatrix) -> bool:
    """True when the stored values (a sample of the first SAMPLE) are non-negative integers reaching
    COUNT_MIN_MAX: raw counts; log-normalised expression is practically never all integers."""
    values = stored_values(x)
    if values.size == 0:
        return False
    sample = values[:SAMPLE]
    return bool(values.max() >= COUNT_MIN_MAX and sample.min() >= 0 and np.all(sample == np.round(sample)))


def _scale_rows(x: np.ndarray | sp.csr_matrix, factor: np.ndarray) -> None:
    if sp.issparse(x):
        x = cast(sp.csr_matrix, x)  # sp.issparse does not narrow: scipy ships no type stubs
        x.data *= np.repeat(factor, np.diff(x.indptr)).astype(x.data.dtype, copy=False)
    else:
        x *= factor[:, None].astype(x.dtype, copy=False)


def log_normalise(x: np.ndarray | sp.csr_matrix, target_sum: float = TARGET_SUM,
                  totals: np.ndarray | None = None) -> np.ndarray | sp.csr_matrix:
    """log1p of counts scaled to `target_sum` per cell, in place on a float array or CSR matrix.
    `totals` (per-cell counts over every gene of the file) lets a caller normalise a block of
    genes by the cell's full library size; by default the row sums of `x`. Cells without counts
    stay zero."""
    if sp.issparse(x) and not sp.isspmatrix_csr(x):
        x = cast(sp.spmatrix, x).tocsr()
    if totals is None:
        totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    factor = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    _scale_rows(x, factor)
    if sp.issparse(x):
        data = cast(sp.csr_matrix, x).data
        np.log1p(data, out=data)
    else:
        np.log1p(x, out=x)
    return x


def duplicated_symbols(names: pd.Index) -> list[str]:
    """Gene symbols listed more than once, in first-seen order."""
    return list(pd.Index(names)[pd.Index(names).duplicated()].unique())


def merge_duplicate_genes(x: np.ndarray | sp.csr_matrix, names: pd.Index, counts: bool
                          ) -> tuple[np.ndarray | sp.csr_matrix, pd.Index]:
    """One column per symbol, in first-seen order. Counts are summed (a symbol's reads, whichever
    Ensembl id they were assigned to); normalised values keep the column with the most expression,
    since log values do not add."""
    names = pd.Index(names).astype(str)
    codes, uniques = pd.factorize(names)
    if counts:
        indicator = sp.csr_matrix((np.ones(len(codes), dtype=x.dtype), (np.arange(len(codes)), codes)),
                                  shape=(len(codes), len(uniques)))
        merged = x @ indicator
        return (merged.tocsr() if sp.issparse(merged) else np.asarray(merged)), pd.Index(uniques)
    totals = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
    order = np.lexsort((np.arange(len(codes)), -totals, codes))  # per symbol: most expressed first
    keep = order[np.r_[True, np.diff(codes[order]) != 0]]  # one per symbol, in first-seen order
    return x[:, keep], names[keep]
