"""Metrics beyond the paper: they separate a real prediction from "no change".

- `delta*`: Pearson r of predicted vs true mean change from the real control mean of the cell type
  (the same real control on both sides), on all genes / top-50 / top-10 DE genes.
- `cov*`: two-sided coverage, the reverse of `dis`: mean over predicted cells of the best Pearson r
  with any true cell, so returning real but wrong cells cannot score well on one side only.
- `energy_DE50`: energy distance between predicted and true cells on the condition's top-50 DE
  genes (lower is better; 0 when the two distributions agree).
- `de_overlap` / `de_sign`: agreement of the predicted change with the true DE genes.
"""

from __future__ import annotations

import numpy as np

from metrics.correlation import CHUNK_BYTES, condition_matches, pearson
from metrics.de import welch_t
from metrics.registry import ConditionData, register_gene_set_family, register_metric

TOP_DE = 50
NO_CHANGE = 1e-6  # relative size of a mean change indistinguishable from float32 rounding


def mean_change(cells: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-gene mean of `cells` minus `base` (float64); changes within rounding of `base` are 0,
    so the real controls predict exactly no change whatever the float type they arrive in."""
    change = cells.mean(axis=0, dtype=np.float64) - base
    return np.where(np.abs(change) > NO_CHANGE * (1.0 + np.abs(base)), change, 0.0)


@register_gene_set_family("delta", 1.0, "Pearson r of predicted vs true mean change from the real control mean",
                          whole_set=True)
def delta_pearson(data: ConditionData) -> float:
    base = data.control_mean_var()[0]
    return pearson(mean_change(data.true, base), mean_change(data.pred, base))


@register_gene_set_family("cov", 1.0, "mean over predicted cells of the best Pearson r with any true cell")
def coverage(data: ConditionData) -> float:
    return float(condition_matches(data)[1].mean())


def mean_pairwise_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs (rows of a, rows of b), via matrix products in row
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
    return float(total / (len(a) * len(b)))


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| between two sets of rows (V-statistic)."""
    return max(0.0, 2.0 * mean_pairwise_distance(a, b) - mean_pairwise_distance(a, a) - mean_pairwise_distance(b, b))


@register_metric("energy_DE50", 0.0, "energy distance between predicted and true cells on the top-50 DE genes", higher_is_better=False)
def energy_de50(data: ConditionData) -> float:
    top = data.subset(TOP_DE)
    return energy_distance(top.true, top.pred)


@register_metric("de_overlap", 1.0, "share of the top-50 true DE genes among the top-50 DE genes of the prediction")
def de_overlap(data: ConditionData) -> float:
    """Both lists ranked the same way: |Welch t| of the cells against the real controls. A prediction
    with no change ties every gene: its top 50 is then a random draw, scored at its expected overlap
    (50 / genes, the chance level)."""
    t = np.abs(welch_t(data.pred, data.control, data.control_mean_var()))
    top_true = data.genes(TOP_DE)
    if t.max(initial=0.0) < 1e-9:
        return min(TOP_DE, t.size) / max(1, t.size) if len(top_true) else 0.0
    top_pred = np.argsort(-t, kind="stable")[:TOP_DE]
    return len(np.intersect1d(top_pred, top_true)) / max(1, len(top_true))


@register_metric("de_sign", 1.0, "share of the top-50 DE genes whose predicted change has the true sign (no change: 1/2)",
                 whole_set=True)
def de_sign(data: ConditionData) -> float:
    """1 per gene whose predicted change has the true sign, 0 for the opposite sign, 1/2 for no
    predicted change (a coin flip's expectation): "no change" scores the chance level 0.5."""
    top = data.subset(TOP_DE)
    base = top.control_mean_var()[0]
    true_sign, pred_sign = np.sign(mean_change(top.true, base)), np.sign(mean_change(top.pred, base))
    changed = true_sign != 0
    if not changed.any():
        return 0.5
    agree = np.where(pred_sign == 0, 0.5, (pred_sign == true_sign).astype(float))
    return float(agree[changed].mean())
