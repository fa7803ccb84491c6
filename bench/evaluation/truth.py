"""The real cells a prediction is scored against: the true cells of each scored condition, each
cell type's controls with their per-gene statistics, and each condition's DE genes."""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np

from bench.errors import BenchError
from bench.schema import CONTROL, Condition, RowIndex
from metrics.de import mean_var, significant_genes
from predictors.base import dense


def de_genes(true: np.ndarray, control: np.ndarray, control_stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A condition's DE genes from its true cells against the cell type's controls
    (`metrics.de.significant_genes`: significant at FDR < 0.05, best first; empty when inert)."""
    return significant_genes(true, control_stats, len(control))


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
        self.de_genes = {c: de_genes(self.cells[c], self.controls[c.cell_type], self.control_stats[c.cell_type])
                         for c in self.conditions}

    def de(self, condition: Condition) -> np.ndarray:
        """The condition's significant DE gene indices, best first (empty: an inert condition)."""
        return self.de_genes[condition]

    def active(self, condition: Condition) -> bool:
        """Whether the condition's truth has a significant DE gene."""
        return len(self.de_genes[condition]) > 0
