"""Peer metrics under the names cell-eval (and the Virtual Cell Challenge) report, plus Systema's
centroid accuracy, so bench scores can be read next to theirs (docs/metrics.md, "Peer metrics").

- `mse`, `mae`: error of the predicted pseudobulk (per-gene mean) against the true one;
  `mse_delta`, `mae_delta`: the same on mean changes from the real control mean.
- `overlap_at_N`, `overlap_at_50`, `precision_at_50`, `de_direction_match`: agreement of the
  Wilcoxon DE genes of the prediction with those of the truth, both against the real controls
  (`metrics.wilcoxon`); NaN on inert conditions (no significant true gene). The predicted side's test
  depends on the output's form (a shift of the controls is called far more often than sampled cells
  with the same mean), so the headline recovers DE genes with `de_recall` instead.
- `activity_auroc` (split-level): does the predicted effect size tell the conditions with an
  effect from the inert ones? (Where the inert conditions are scored.)
- `discrimination_score_l1` and `centroid_accuracy` (split-level): how well a condition's prediction
  singles out its own truth among the truths of the other conditions of its cell type.
- `pearson_edistance` (split-level, one value): do the predicted effect sizes (energy distance to
  the controls) rank the conditions as the true ones do?
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import cdist

from metrics.beyond import mean_pairwise_distance, within_distance
from metrics.correlation import pearson
from metrics.registry import ConditionData, SplitData, register_metric, register_split_metric
from metrics.wilcoxon import DEResult, differential_expression

TOP_DE = 50
CHANCE_RANK = 0.5  # expected score of a random ranking of the conditions (discrimination, centroids)


def pseudobulk_errors(data: ConditionData) -> tuple[np.ndarray, np.ndarray]:
    """(predicted - true per-gene means, predicted - true mean changes from the control mean),
    float64; computed once per condition and shared by the four error metrics."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        base = data.control_mean_var()[0]
        true, pred = data.true.mean(axis=0, dtype=np.float64), data.pred.mean(axis=0, dtype=np.float64)
        return pred - true, (pred - base) - (true - base)

    return data.cached(("peer", "errors"), compute)


def register_errors(name: str, what: str, delta: bool, reduce: Callable[[np.ndarray], np.ndarray]) -> None:
    """Register one pseudobulk error metric (lower is better, 0 for a perfect prediction)."""

    @register_metric(name, 0.0, what, higher_is_better=False, whole_set=True)
    def metric(data: ConditionData) -> float:
        return float(np.mean(reduce(pseudobulk_errors(data)[int(delta)])))


register_errors("mse", "mean squared error of the predicted vs true per-gene means", False, np.square)
register_errors("mae", "mean absolute error of the predicted vs true per-gene means", False, np.abs)
register_errors("mse_delta", "mean squared error of the predicted vs true mean change from the real control mean", True, np.square)
register_errors("mae_delta", "mean absolute error of the predicted vs true mean change from the real control mean", True, np.abs)


def de_pair(data: ConditionData) -> tuple[DEResult, DEResult]:
    """(true, predicted) Wilcoxon DE against the real controls; the true side once per condition."""
    true = data.truth_cached(("peer", "wilcoxon"), lambda: differential_expression(data.true, data.control))
    pred = data.cached(("peer", "wilcoxon"), lambda: differential_expression(data.pred, data.control))
    return true, pred


def top_overlap(true: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Share of the first `k` true genes among the first `k` predicted ones (0 for k = 0)."""
    return len(np.intersect1d(true[:k], pred[:k])) / k if k > 0 else 0.0


def recovered(true: DEResult, pred: DEResult, k: int) -> float:
    """`top_overlap` of the first `k` genes; NaN where the truth has no significant gene (an inert
    condition has nothing to recover: it is scored by `activity_auroc`, never as a hit or a miss)."""
    if len(true.ranked) == 0:
        return float("nan")
    return top_overlap(true.ranked, pred.ranked, k)


@register_metric("overlap_at_N", 1.0, "share of the N significant true DE genes among the top-N predicted DE genes (Wilcoxon on the predicted cells, FDR < 0.05, by |log2 FC|)")
def overlap_at_n(data: ConditionData) -> float:
    true, pred = de_pair(data)
    return recovered(true, pred, len(true.ranked))


@register_metric("overlap_at_50", 1.0, "share of the top-50 significant true DE genes among the top-50 predicted ones (fewer when fewer are significant)")
def overlap_at_50(data: ConditionData) -> float:
    true, pred = de_pair(data)
    return recovered(true, pred, min(TOP_DE, len(true.ranked)))


@register_metric("precision_at_50", 1.0, "share of the top-50 significant predicted DE genes among the top-50 true ones (fewer when fewer are predicted)")
def precision_at_50(data: ConditionData) -> float:
    true, pred = de_pair(data)
    if len(true.ranked) == 0:
        return float("nan")
    return top_overlap(true.ranked, pred.ranked, min(TOP_DE, len(pred.ranked)))


@register_metric("de_direction_match", 1.0, "share of the significant true DE genes whose predicted log2 fold change has the true sign")
def de_direction_match(data: ConditionData) -> float:
    """A predicted fold change of exactly 0 counts as a miss (as cell-eval), so "no change" can
    score below 1/2 and no chance level is claimed. NaN where the truth has no significant gene
    (cell-eval reports nothing there either)."""
    true, pred = de_pair(data)
    if len(true.ranked) == 0:
        return float("nan")
    genes = true.ranked
    return float(np.mean(np.sign(true.lfc[genes]) == np.sign(pred.lfc[genes])))


def per_cell_type(split: SplitData, score: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """`score(pred, true)` over the rows of each cell type at a time (each cell type has its own
    controls, as cell-eval evaluates one cell line at a time); one value per row."""
    out = np.empty(len(split.cell_types))
    for ct in np.unique(split.cell_types):
        rows = np.flatnonzero(split.cell_types == ct)
        out[rows] = score(split.pred_deltas[rows], split.true_deltas[rows])
    return out


def discrimination(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """1 - rank / C, rank = how many of the C true changes are nearer (L1) to the prediction than
    its own (exact ties count half)."""
    dist = cdist(pred, true, "cityblock")
    own = np.diag(dist)[:, None]
    ties = (dist == own).sum(axis=1) - 1
    rank = (dist < own).sum(axis=1) + 0.5 * ties
    return 1.0 - rank / len(true)


@register_split_metric("discrimination_score_l1", 1.0, "1 - normalised rank of the true mean change among those of the cell type's conditions, by L1 distance to the predicted change",
                       chance=CHANCE_RANK, whole_set=True)
def discrimination_score_l1(split: SplitData) -> np.ndarray:
    return per_cell_type(split, discrimination)


def centroid_hits(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Share of the other C - 1 true centroids strictly farther (Euclidean) from the prediction
    than its own; 1 for a cell type with a single condition (nothing to confuse it with)."""
    if len(true) < 2:
        return np.ones(len(true))
    dist = cdist(pred, true, "euclidean")
    return (dist > np.diag(dist)[:, None]).sum(axis=1) / (len(true) - 1)


@register_split_metric("centroid_accuracy", 1.0, "share of the other conditions' true centroids farther (Euclidean) from the prediction than its own (Systema)",
                       chance=CHANCE_RANK, whole_set=True)
def centroid_accuracy(split: SplitData) -> np.ndarray:
    return per_cell_type(split, centroid_hits)


EDISTANCE_CONTROLS = 500  # control cells (a fixed, evenly spaced subset) the E-distances are taken against


def control_subset(control: np.ndarray) -> np.ndarray:
    """At most EDISTANCE_CONTROLS control cells, evenly spaced: the same subset for every scoring."""
    step = max(1, len(control) // EDISTANCE_CONTROLS)
    return control[::step][:EDISTANCE_CONTROLS]


@register_split_metric("pearson_edistance", 1.0, "Pearson r, across the split's conditions, of the predicted vs true energy distance of each condition to the controls")
def pearson_edistance(split: SplitData) -> np.ndarray:
    """One number for the whole split (cell-eval's definition, on all genes, Euclidean), broadcast
    to every row; energy distances as unbiased U-statistics (a V-statistic's bias E|X-X'|/n would
    track set sizes, and set sizes track toxicity). The controls' self term is computed once per cell
    type and the true side once per condition; against a fixed subset of at most EDISTANCE_CONTROLS
    controls."""
    self_terms: dict[int, tuple[np.ndarray, float]] = {}
    true_d, pred_d = [], []
    for data in split.conditions:
        key = id(data.control)
        if key not in self_terms:
            ctrl = control_subset(data.control)
            self_terms[key] = (ctrl, within_distance(ctrl))
        ctrl, sigma = self_terms[key]

        def edist(cells: np.ndarray) -> float:
            return 2.0 * mean_pairwise_distance(cells, ctrl) - within_distance(cells) - sigma

        true_d.append(data.truth_cached(("peer", "edistance"), lambda: edist(data.true)))
        pred_d.append(edist(data.pred))
    return np.full(len(split.conditions), pearson(np.array(true_d), np.array(pred_d)))


def activity_ranks(effect: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Each condition's share in the AUROC of `effect` for active vs inert conditions: for an active
    one, the share of inert conditions with a smaller predicted effect; for an inert one, the share
    of active conditions with a larger one (ties count half). Their mean over either group, and so
    over all conditions, is the AUROC (1/2 for a constant effect). NaN when one group is empty."""
    if active.all() or not active.any():
        return np.full(len(effect), np.nan)
    on, off = effect[active], effect[~active]
    out = np.empty(len(effect))
    out[active] = ((on[:, None] > off[None, :]) + 0.5 * (on[:, None] == off[None, :])).mean(axis=1)
    out[~active] = ((on[None, :] > off[:, None]) + 0.5 * (on[None, :] == off[:, None])).mean(axis=1)
    return out


@register_split_metric("activity_auroc", 1.0, "AUROC, per cell type, of the predicted size of the mean change for conditions with vs without significant true DE genes",
                       chance=CHANCE_RANK, whole_set=True)
def activity_auroc(split: SplitData) -> np.ndarray:
    """Telling active from inert conditions, scored once here (the DE-recovery metrics skip inert
    conditions). The predicted effect is the Euclidean norm of the predicted mean change."""
    effect = np.linalg.norm(split.pred_deltas, axis=1)
    active = np.array([len(data.de) > 0 for data in split.conditions])  # the truth has significant DE genes
    out = np.empty(len(effect))
    for ct in np.unique(split.cell_types):
        rows = np.flatnonzero(split.cell_types == ct)
        out[rows] = activity_ranks(effect[rows], active[rows])
    return out
