"""The paper's metrics: Pearson of per-gene means (`mean`) and the distribution metric (`dis`).

Convention: a Pearson correlation involving a constant vector is defined as 0 (no linear
association can be measured), so every metric is NaN-free.
"""

from __future__ import annotations

import numpy as np

from metrics.registry import ConditionData, register_gene_set_family

CHUNK_BYTES = 64 * 2**20  # bound on the size of one block of the correlation matrix


def standardize_rows(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (float64 for accuracy); constant rows become zeros."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    return np.divide(x, norm[:, None], out=np.zeros_like(x), where=norm[:, None] > 1e-12 * max(1.0, x.shape[1]))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two vectors; 0 when either is constant."""
    za, zb = standardize_rows(np.atleast_2d(a)), standardize_rows(np.atleast_2d(b))
    return float(np.clip(za[0] @ zb[0], -1.0, 1.0))


def best_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max Pearson r of each row of `a` with any row of `b`, and of each row of `b` with any row
    of `a`: one standardised matrix product, in row chunks so memory stays bounded."""
    za, zb = standardize_rows(a), standardize_rows(b)
    if za.shape[0] == 0 or zb.shape[0] == 0:
        return np.zeros(za.shape[0]), np.zeros(zb.shape[0])
    rows = max(1, CHUNK_BYTES // (8 * zb.shape[0]))
    best_a, best_b = np.empty(za.shape[0]), np.full(zb.shape[0], -np.inf)
    zbt = zb.T.copy()
    for start in range(0, za.shape[0], rows):
        block = za[start : start + rows] @ zbt
        best_a[start : start + rows] = block.max(axis=1)
        np.maximum(best_b, block.max(axis=0), out=best_b)
    return np.clip(best_a, -1.0, 1.0), np.clip(best_b, -1.0, 1.0)


def max_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of `a`, the max Pearson r with any row of `b`."""
    return best_matches(a, b)[0]


def condition_matches(data: ConditionData) -> tuple[np.ndarray, np.ndarray]:
    """(best r per true cell, best r per predicted cell), computed once and shared by `dis` and `cov`."""
    return data.cached("best_matches", lambda: best_matches(data.true, data.pred))


@register_gene_set_family("mean", 1.0, "Pearson r of true vs predicted per-gene means", whole_set=True)
def mean_pearson(data: ConditionData) -> float:
    return pearson(data.true.mean(axis=0), data.pred.mean(axis=0))


@register_gene_set_family("dis", 1.0, "mean over true cells of the best Pearson r with any predicted cell", whole_set=True)
def dis(data: ConditionData) -> float:
    return float(condition_matches(data)[0].mean())
