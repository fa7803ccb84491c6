"""The real cells a prediction is scored against: the true cells of each scored condition, each
cell type's controls with their per-gene statistics, and each condition's DE genes."""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np

from bench.errors import BenchError
from bench.schema import CONTROL, Condition, RowIndex
from metrics.de import by_change, mean_var, standardized_change
from metrics.peer import DE_MEMO
from metrics.wilcoxon import DEResult, differential_expression
from predictors.base import dense


def de_genes(true: np.ndarray, control: np.ndarray, control_stats: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, DEResult]:
    """A condition's DE genes: those significant in a Wilcoxon test of its true cells against the
    controls (Benjamini-Hochberg FDR < 0.05, `metrics.wilcoxon`), ranked by decreasing |standardised
    mean change| (empty for an inert condition); with the test's result, which the DE metrics share."""
    tested = differential_expression(true, control)
    change = standardized_change(true.mean(axis=0, dtype=np.float64), control_stats)
    return by_change(np.sort(tested.ranked), change), tested


class Truth:
    """Dense copies of the scored conditions' true cells and their cell types' controls, read from
    the data once so every epoch is scored without touching it again."""

    def __init__(self, adata: ad.AnnData, conditions: Iterable[Condition], control: str = CONTROL):
        self.conditions = sorted(set(conditions))
        index = RowIndex(adata.obs)
        self.controls: dict[str, np.ndarray] = {}
        self.control_stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per-gene (mean, variance)
        for ct in sorted({c.cell_type for c in self.conditions}):
            rows = index.rows(ct, control)
            if rows.size == 0:
                raise BenchError(f"no control cells (label '{control}') for cell type '{ct}'")
            self.controls[ct] = dense(adata.X[rows])
            self.control_stats[ct] = mean_var(self.controls[ct])
        self.cells: dict[Condition, np.ndarray] = {}
        for c in self.conditions:
            rows = index.rows(c.cell_type, c.drug, c.dose)
            if rows.size == 0:
                raise BenchError(f"no true cells for condition {c.key}")
            self.cells[c] = dense(adata.X[rows])
        # Log-normalised data: predictions are clipped at 0 (`scoring.validated`), the same for every predictor.
        self.non_negative = all(x.min(initial=0.0) >= 0 for x in [*self.controls.values(), *self.cells.values()])
        # Metrics' work that depends on a condition's true and control cells alone, kept across predictions.
        self.memo: dict[Condition, dict] = {c: {} for c in self.conditions}
        self.de_genes: dict[Condition, np.ndarray] = {}
        for c in self.conditions:
            self.de_genes[c], self.memo[c][DE_MEMO] = de_genes(self.cells[c], self.controls[c.cell_type],
                                                               self.control_stats[c.cell_type])

    def de(self, condition: Condition) -> np.ndarray:
        """The condition's significant DE gene indices, best first (empty: an inert condition)."""
        return self.de_genes[condition]

    def active(self, condition: Condition) -> bool:
        """Whether the condition's truth has a significant DE gene."""
        return len(self.de_genes[condition]) > 0
