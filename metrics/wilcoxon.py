"""Wilcoxon rank-sum (Mann-Whitney U) differential expression of cells against reference cells,
vectorised over genes, with the conventions of cell-eval's DE engine (pdex):

- two-sided asymptotic test with tie correction and continuity correction (scipy's
  `mannwhitneyu(method='asymptotic')`); p = 1 where every value of a gene is the same;
- Benjamini-Hochberg FDR over the genes of one comparison; significant means FDR < 0.05;
- log2 fold change of the geometric-mean pseudobulks of log1p data: log2(expm1(mean(x)) /
  expm1(mean(ref))), means in the data's own float type, 0 where both are 0 (or the ratio is
  undefined), +-inf where only one is 0 (no pseudocount);
- FDR and fold change rounded to float32, as cell-eval stores them, before the threshold and the
  ranking; significant genes ranked by decreasing |log2 fold change|, ties in gene order.

The reference side (one cell type's controls, thousands of cells) is reduced once to its distinct
values per gene, and its pseudobulk computed once; each group of cells is then placed among them
with one binary search over all genes at once, so scoring a prediction never re-sorts the
controls. Only the group's distinct values per gene are searched: sparse data holds long runs of
zeros, and a run of equal values has one place among the reference.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import false_discovery_control

FDR_THRESHOLD = 0.05


@dataclass(frozen=True)
class RankReference:
    """The reference cells of a test, per gene: the sorted distinct values of all genes (`values`)
    and, gene-major, the integer keys gene * len(values) + value's position there, sorted, with, per
    key, how many reference values of all genes come before it; so one integer `searchsorted`
    counts, for any gene and value, the reference values below and equal to it."""

    values: np.ndarray  # (v,) float64, sorted distinct values over every gene
    keys: np.ndarray  # (d,) int64, sorted: gene * v + position of the value in `values`
    before: np.ndarray  # (d + 1,) int64: reference values (all genes, gene-major) before each key
    n_cells: int
    tie_term: np.ndarray  # (g,) sum over tied runs of t^3 - t among the reference values alone
    mean: np.ndarray  # (g,) per-gene mean in the data's own float type (the fold change's denominator)

    @classmethod
    def from_cells(cls, ref: np.ndarray) -> RankReference:
        """Built from a (cells, genes) matrix."""
        ref = np.asarray(ref)
        n_cells, n_genes = ref.shape
        values = np.sort(ref.T.astype(np.float64), axis=1)
        first = np.ones(values.shape, dtype=bool)
        first[:, 1:] = values[:, 1:] != values[:, :-1]
        start = np.flatnonzero(first.ravel())
        counts = np.diff(np.append(start, values.size))
        genes = start // max(n_cells, 1)
        distinct = np.unique(values.ravel()[start])
        keys = genes * len(distinct) + np.searchsorted(distinct, values.ravel()[start])
        before = np.concatenate([[0], np.cumsum(counts)])
        t = counts.astype(np.float64)
        tie_term = np.bincount(genes, weights=t**3 - t, minlength=n_genes)
        return cls(distinct, keys, before, n_cells, tie_term, ref.mean(axis=0))

    def counts_below(self, genes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each (gene, value): the number of reference values of that gene strictly below the
        value, and the number equal to it (none unless the value is among `values`)."""
        position = np.searchsorted(self.values, values)
        present = self.values[np.minimum(position, len(self.values) - 1)] == values if len(self.values) else position < 0
        query = genes * len(self.values) + position
        offset = genes * self.n_cells
        lower = np.searchsorted(self.keys, query)
        # Keys are distinct: the gene holds the value exactly when the key found is the query itself.
        hit = present & (self.keys[np.minimum(lower, len(self.keys) - 1)] == query) if len(self.keys) else np.zeros(len(query), bool)
        below = self.before[lower] - offset
        return below, self.before[lower + hit] - self.before[lower]


_REFERENCES: dict[int, tuple[weakref.ref, RankReference]] = {}


def reference_for(control: np.ndarray) -> RankReference:
    """The `RankReference` of a control matrix, built once per matrix object and dropped with it
    (control matrices are shared by every condition of a cell type and never modified)."""
    key = id(control)
    hit = _REFERENCES.get(key)
    if hit is not None and hit[0]() is control:
        return hit[1]
    built = RankReference.from_cells(control)
    _REFERENCES[key] = (weakref.ref(control, lambda _: _REFERENCES.pop(key, None)), built)
    return built


def rank_sum_pvalues(group: np.ndarray, ref: RankReference) -> np.ndarray:
    """Two-sided Mann-Whitney U p-value per gene of `group` (cells, genes) against the reference."""
    n1, n_genes = group.shape
    n2 = ref.n_cells
    values = np.sort(np.asarray(group).T.astype(np.float64), axis=1)
    # Runs of equal values per gene: each run is placed among the reference once, for all its t cells.
    first = np.ones(values.shape, dtype=bool)
    first[:, 1:] = values[:, 1:] != values[:, :-1]
    start = np.flatnonzero(first.ravel())
    genes = start // max(n1, 1)
    t_group = np.diff(np.append(start, values.size)).astype(np.float64)
    below, equal = ref.counts_below(genes, values.ravel()[start])
    # Counts and half counts: these sums are exact in float64 in any order of summation.
    u1 = np.bincount(genes, weights=t_group * (below + 0.5 * equal), minlength=n_genes)

    # Ties of the pooled sample: the reference's own runs, corrected where group values join them.
    t_ref = equal.astype(np.float64)
    t_all = t_group + t_ref
    extra = (t_all**3 - t_all) - (t_ref**3 - t_ref)
    tie_term = ref.tie_term + np.bincount(genes, weights=extra, minlength=n_genes)

    n = n1 + n2
    u = np.maximum(u1, n1 * n2 - u1)
    var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))
    sd = np.sqrt(np.maximum(var, 0.0))
    z = np.divide(u - n1 * n2 / 2.0 - 0.5, sd, out=np.zeros(n_genes), where=var > 0)
    p = np.clip(2.0 * ndtr(-z), 0.0, 1.0)
    return np.where(var > 0, p, 1.0)


def log2_fold_change(group_mean: np.ndarray, ref_mean: np.ndarray) -> np.ndarray:
    """log2 of the ratio of geometric-mean pseudobulks of log1p data (see module docstring), from
    the two sides' per-gene means of the log1p data."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # raw counts overflow: +-inf is the answer
        lfc = np.log2(np.expm1(group_mean) / np.expm1(ref_mean))
    return np.where(np.isnan(lfc), 0.0, lfc).astype(np.float32)


@dataclass(frozen=True)
class DEResult:
    """One comparison: per-gene log2 fold change (float32) and the significant genes, best first."""

    lfc: np.ndarray
    ranked: np.ndarray


def differential_expression(cells: np.ndarray, control: np.ndarray) -> DEResult:
    """Wilcoxon DE of `cells` against `control` (both (cells, genes) log1p expression)."""
    ref = reference_for(control)
    lfc = log2_fold_change(np.asarray(cells).mean(axis=0), ref.mean)
    fdr = false_discovery_control(rank_sum_pvalues(cells, ref))
    significant = np.flatnonzero(fdr.astype(np.float32) < FDR_THRESHOLD)
    order = np.argsort(-np.abs(lfc[significant]), kind="stable")
    return DEResult(lfc, significant[order])
