"""Differentially expressed genes: per (cell type, drug), doses pooled, treated vs that cell
type's controls, ranked by |Welch t| as scanpy's rank_genes_groups(method='t-test', rankby_abs=True).

scanpy's conventions, followed here: means and E[x^2] accumulated in float64, variance
E[x^2] - mean^2 scaled by n/(n-1) (left biased for one cell), t = 0 where both the difference and
the standard error vanish, t = +-inf where only the standard error does (constant but different).
Exact ties in |t| are ordered by gene index here; scanpy leaves their order to numpy's partition."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr
from scipy.stats import false_discovery_control

from bench.schema import CONTROL, RowIndex

NO_CHANGE = 1e-6  # relative size of a mean change indistinguishable from float32 rounding
FDR_LEVEL = 0.05  # Benjamini-Hochberg level of a condition's DE genes


def mean_var(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and unbiased variance of a dense or CSR matrix, in float64."""
    n = x.shape[0]
    if sp.issparse(x):
        mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0), dtype=np.float64).ravel()
    else:
        x = np.asarray(x)
        mean, sq = x.mean(axis=0, dtype=np.float64), (x * x).mean(axis=0, dtype=np.float64)
    var = (sq - mean**2) * (n / max(n - 1, 1))
    return mean, np.maximum(var, 0.0)


def welch_t(x_group, x_ref, ref_stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Welch t statistic per gene of group vs reference (`ref_stats`: its precomputed mean_var):
    0 where the means and the variances all agree, +-inf where both groups are constant but at
    different values (as scipy/scanpy)."""
    m1, v1 = mean_var(x_group)
    m0, v0 = ref_stats if ref_stats is not None else mean_var(x_ref)
    diff = m1 - m0
    se = np.sqrt(v1 / x_group.shape[0] + v0 / x_ref.shape[0])
    vanished = np.where(diff == 0, 0.0, np.copysign(np.inf, diff))
    return np.divide(diff, se, out=vanished, where=se > 0)


def rank_by_abs_t(x_group, x_ref, ref_stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Gene indices ordered by decreasing |Welch t| (stable for ties; `ref_stats` as in `welch_t`)."""
    return np.argsort(-np.abs(welch_t(x_group, x_ref, ref_stats)), kind="stable")


def mean_change(cells: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-gene mean of `cells` minus `base` (float64); changes within rounding of `base` are 0,
    so the real controls predict exactly no change whatever the float type they arrive in."""
    change = cells.mean(axis=0, dtype=np.float64) - base
    return np.where(np.abs(change) > NO_CHANGE * (1.0 + np.abs(base)), change, 0.0)


def standardized_change(mean: np.ndarray, control_stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per-gene change of a mean from the control mean in units of the controls' standard deviation:
    what a prediction's DE ranking rests on, so that a shift, sampled cells and real cells with the
    same mean change rank genes alike. +-inf where the controls are constant and the mean moved."""
    base, var = control_stats
    diff = np.asarray(mean, dtype=np.float64) - base
    sd = np.sqrt(var)
    moved = np.abs(diff) > NO_CHANGE * (1.0 + np.abs(base))
    out = np.where(moved, np.copysign(np.inf, diff), 0.0)
    return np.divide(diff, sd, out=out, where=moved & (sd > 0))


def by_change(genes: np.ndarray, change: np.ndarray) -> np.ndarray:
    """`genes` ordered by decreasing |change| (ties in gene order)."""
    return genes[np.argsort(-np.abs(change[genes]), kind="stable")]


def significant_genes(cells: np.ndarray, control_stats: tuple[np.ndarray, np.ndarray], n_control: int) -> np.ndarray:
    """A condition's DE genes: those whose mean moved from the control mean more than chance allows
    under "no effect" (a z-test with the controls' variance, which the treated cells share under that
    null: z = change / (sd * sqrt(1/n + 1/n_control)); Benjamini-Hochberg FDR < FDR_LEVEL), ranked by
    decreasing |standardised change|. For one condition z is that change times a constant, so the
    significant genes are exactly its top genes by standardised change: a prediction with the true
    mean change recovers all of them. Empty for an inert condition."""
    change = standardized_change(np.asarray(cells).mean(axis=0, dtype=np.float64), control_stats)
    z = np.abs(change) / np.sqrt(1.0 / max(len(cells), 1) + 1.0 / max(n_control, 1))
    fdr = false_discovery_control(np.where(np.isinf(z), 0.0, 2.0 * ndtr(-z)))
    return by_change(np.flatnonzero(fdr < FDR_LEVEL), change)


def de_key(cell_type: str, drug: str) -> str:
    return f"{cell_type}_{drug}"


def rank_de_genes(adata: ad.AnnData, control: str = CONTROL, pairs: set[tuple[str, str]] | None = None,
                  index: RowIndex | None = None) -> dict[str, np.ndarray]:
    """Ranked DE gene indices for every (cell type, drug) pair (or only `pairs`), keyed
    'celltype_drug'. Doses are pooled; the reference is the cell type's control cells, whose
    statistics are computed once per cell type. `index`: adata's rows grouped (built when None)."""
    index = index or RowIndex(adata.obs)
    out: dict[str, np.ndarray] = {}
    refs: dict[str, tuple] = {}
    for ct, drug in index.pairs:
        if drug == control or (pairs is not None and (ct, drug) not in pairs):
            continue
        if ct not in refs:
            ctrl = adata.X[index.rows(ct, control)]
            refs[ct] = (ctrl, mean_var(ctrl) if ctrl.shape[0] else None)
        ctrl, stats = refs[ct]
        if stats is not None:
            out[de_key(ct, drug)] = rank_by_abs_t(adata.X[index.rows(ct, drug)], ctrl, stats)
    return out
