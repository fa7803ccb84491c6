"""Metrics beyond the paper: they separate a real prediction from "no change".

- `delta*`: Pearson r of predicted vs true mean change from the real control mean of the cell type
  (the same real control on both sides), on all genes / top-50 / top-10 DE genes.
- `cov*`: two-sided coverage, the reverse of `dis`: mean over predicted cells of the best Pearson r
  with any true cell (improper: a smooth mean can beat real cells, docs/metrics.md).
- `energy_DE50`: energy distance between predicted and true cells on the condition's DE genes
  (unbiased U-statistic: 0 in expectation when the two distributions agree, whatever the set sizes).
- `de_recall` / `de_sign`: recovery of the true DE genes from the predicted mean change alone, so a
  shift, sampled cells and real cells with the same mean change score alike.

Every DE-set metric is undefined (NaN) on a condition whose truth has no significant DE gene: there
is nothing to recover, and such conditions are scored by `activity_auroc` instead (metrics/peer.py).
"""

from __future__ import annotations

import numpy as np

from metrics.correlation import CHUNK_BYTES, condition_matches, pearson
from metrics.de import mean_change, standardized_change
from metrics.registry import ConditionData, register_gene_set_family, register_metric

TOP_DE = 50


@register_gene_set_family("delta", 1.0, "Pearson r of predicted vs true mean change from the real control mean",
                          whole_set=True)
def delta_pearson(data: ConditionData) -> float:
    base = data.control_mean_var()[0]
    return pearson(mean_change(data.true, base), mean_change(data.pred, base))


@register_gene_set_family("cov", 1.0, "mean over predicted cells of the best Pearson r with any true cell (improper)")
def coverage(data: ConditionData) -> float:
    return float(condition_matches(data)[1].mean())


def pairwise_distance_sum(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of Euclidean distances over all pairs (rows of a, rows of b), via matrix products in row
    chunks so memory stays bounded (the real controls as a prediction are thousands of cells)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    b_sq, bt = (b * b).sum(1)[None, :], b.T.copy()
    rows = max(1, CHUNK_BYTES // (8 * len(b)))
    total = 0.0
    for start in range(0, len(a), rows):
        block = a[start : start + rows]
        sq = (block * block).sum(1)[:, None] + b_sq - 2.0 * block @ bt
        total += np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq).sum()
    return float(total)


def mean_pairwise_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs (rows of a, rows of b)."""
    return pairwise_distance_sum(a, b) / max(1, len(a) * len(b))


def within_distance(a: np.ndarray) -> float:
    """Mean Euclidean distance over pairs of distinct rows of `a` (0 for fewer than two rows): the
    unbiased estimate of E|X - X'|, without the zero diagonal a V-statistic counts."""
    n = len(a)
    return pairwise_distance_sum(a, a) / (n * (n - 1)) if n > 1 else 0.0


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| between two sets of rows as an unbiased
    U-statistic: its expectation is 0 when both sets come from one distribution, whatever their
    sizes (a V-statistic adds E|X-X'|/n), so it can be slightly negative."""
    return 2.0 * mean_pairwise_distance(a, b) - within_distance(a) - within_distance(b)


@register_metric("energy_DE50", 0.0, "energy distance (U-statistic) between predicted and true cells on the top-50 DE genes",
                 higher_is_better=False)
def energy_de50(data: ConditionData) -> float:
    if len(data.de) == 0:
        return float("nan")
    top = data.subset(TOP_DE)
    return energy_distance(top.true, top.pred)


def expected_recall(called: np.ndarray, true: np.ndarray, n_genes: int, k: int) -> float:
    """Expected share of the `true` genes among a top-`k` list that holds the `called` genes (best
    first) and, when fewer than `k` are called, a random draw of the uncalled genes for the rest (ties
    of "no change" are a coin flip, never a gain or a loss)."""
    picked = called[:k]
    hits: float = len(np.intersect1d(picked, true))
    rest = k - len(picked)
    if rest > 0:
        hits += rest * (len(true) - hits) / max(1, n_genes - len(picked))
    return hits / max(1, len(true))


@register_metric("de_recall", 1.0, "share of the N significant true DE genes among the N genes of largest predicted standardised mean change",
                 whole_set=True)
def de_recall(data: ConditionData) -> float:
    """The predicted genes are ranked by |mean change| over the controls' sd (`standardized_change`),
    which depends on the predicted mean alone: a shift, sampled cells and real cells with the same
    mean change get the same ranking. Genes with no predicted change are not called."""
    if len(data.de) == 0:
        return float("nan")
    change = standardized_change(data.pred.mean(axis=0, dtype=np.float64), data.control_mean_var())
    moved = np.flatnonzero(change)
    called = moved[np.argsort(-np.abs(change[moved]), kind="stable")]
    return expected_recall(called, data.de, change.size, len(data.de))


@register_metric("de_sign", 1.0, "share of the top-50 DE genes whose predicted change has the true sign (no change: 1/2)",
                 whole_set=True)
def de_sign(data: ConditionData) -> float:
    """1 per gene whose predicted change has the true sign, 0 for the opposite sign, 1/2 for no
    predicted change (a coin flip's expectation): "no change" scores the chance level 0.5."""
    if len(data.de) == 0:
        return float("nan")
    top = data.subset(TOP_DE)
    base = top.control_mean_var()[0]
    true_sign, pred_sign = np.sign(mean_change(top.true, base)), np.sign(mean_change(top.pred, base))
    agree = np.where(pred_sign == 0, 0.5, (pred_sign == true_sign).astype(float))
    return float(agree.mean())
