"""The real cells a prediction is scored against: the true cells of each scored condition, each
cell type's controls with their per-gene statistics, and the DE genes of each (cell type, drug)."""

from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np

from bench.errors import BenchError
from bench.schema import CONTROL, DE_UNS_KEY, Condition, RowIndex
from metrics.de import de_key, mean_var, rank_de_genes
from predictors.base import dense


def de_lists(adata: ad.AnnData, pairs: set[tuple[str, str]], control: str = CONTROL,
             index: RowIndex | None = None) -> dict[str, np.ndarray]:
    """Ranked DE gene indices per (cell type, drug): from `uns['bench_de']` when given, else ranked
    by |Welch t| of treated vs control cells on the data itself (`index`: adata's rows, grouped)."""
    given = adata.uns.get(DE_UNS_KEY)
    if given is None:
        return rank_de_genes(adata, control, pairs, index)
    pos = {g: i for i, g in enumerate(adata.var_names)}
    out = {}
    for ct, drug in pairs:
        key = de_key(ct, drug)
        if key not in given:
            raise BenchError(f"uns['{DE_UNS_KEY}'] has no DE list for '{key}'")
        out[key] = np.array([pos[g] for g in given[key] if g in pos], dtype=int)
    return out


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
        self.de_genes = de_lists(adata, {(c.cell_type, c.drug) for c in self.conditions}, control, index)
        # Metrics' work that depends on a condition's true and control cells alone, kept across predictions.
        self.memo: dict[Condition, dict] = {c: {} for c in self.conditions}

    def de(self, condition: Condition) -> np.ndarray:
        """The condition's DE gene indices, best first (shared by its cell type and drug's doses)."""
        return self.de_genes[de_key(condition.cell_type, condition.drug)]
