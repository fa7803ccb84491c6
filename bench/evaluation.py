"""Scoring predictions against the real cells of each condition, with every registered metric."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition
from metrics import ConditionData, Metric, get_metrics
from metrics.de import de_key, rank_de_genes
from predictors.base import dense

# uns key holding DE lists (dict 'celltype_drug' -> ranked gene symbols) that override ranking.
DE_UNS_KEY = "bench_de"


def de_lists(adata: ad.AnnData, pairs: set[tuple[str, str]], control: str = CONTROL) -> dict[str, np.ndarray]:
    """Ranked DE gene indices per (cell type, drug): from `uns['bench_de']` when given, else ranked
    by |Welch t| of treated vs control cells on the data itself."""
    given = adata.uns.get(DE_UNS_KEY)
    if given is None:
        return rank_de_genes(adata, control, pairs)
    pos = {g: i for i, g in enumerate(adata.var_names)}
    out = {}
    for ct, drug in pairs:
        key = de_key(ct, drug)
        if key not in given:
            raise BenchError(f"uns['{DE_UNS_KEY}'] has no DE list for '{key}'")
        out[key] = np.array([pos[g] for g in given[key] if g in pos], dtype=int)
    return out


class Evaluator:
    """Holds the real cells of the conditions to score, each cell type's controls and DE genes,
    so a predictor can be scored at every epoch without touching the data again."""

    def __init__(self, adata: ad.AnnData, conditions: Iterable[Condition], control: str = CONTROL, metrics: list[Metric] | None = None):
        self.control = control
        self.metrics = metrics or get_metrics()
        self.conditions = sorted(set(conditions))
        obs = adata.obs
        cell_types = obs[CELL_TYPE].astype(str).to_numpy()
        drugs = obs[DRUG].astype(str).to_numpy()
        doses = obs[DOSE].astype(float).to_numpy()
        self._controls: dict[str, np.ndarray] = {}
        for ct in sorted({c.cell_type for c in self.conditions}):
            rows = np.flatnonzero((cell_types == ct) & (drugs == control))
            if rows.size == 0:
                raise BenchError(f"no control cells (label '{control}') for cell type '{ct}'")
            self._controls[ct] = dense(adata.X[rows])
        self._true: dict[Condition, np.ndarray] = {}
        for c in self.conditions:
            rows = np.flatnonzero((cell_types == c.cell_type) & (drugs == c.drug) & np.isclose(doses, c.dose))
            self._true[c] = dense(adata.X[rows])
        self._de = de_lists(adata, {(c.cell_type, c.drug) for c in self.conditions}, control)

    def controls(self, cell_type: str) -> np.ndarray:
        return self._controls[cell_type]

    def true_cells(self, condition: Condition) -> np.ndarray:
        return self._true[condition]

    def de(self, condition: Condition) -> np.ndarray:
        return self._de[de_key(condition.cell_type, condition.drug)]

    def score(self, predictions: dict[Condition, np.ndarray]) -> pd.DataFrame:
        """One row per condition: cell_type, drug, dose, n_true, n_pred, then every metric."""
        rows = []
        for cond in self.conditions:
            pred = np.asarray(predictions[cond], dtype=np.float32)
            true = self._true[cond]
            if pred.ndim != 2 or pred.shape[1] != true.shape[1] or pred.shape[0] == 0:
                raise BenchError(
                    f"prediction for {cond.key} has shape {pred.shape}: expected (n_cells>0, {true.shape[1]})"
                )
            if not np.isfinite(pred).all():
                raise BenchError(f"prediction for {cond.key} contains NaN or infinite values")
            data = ConditionData(true=true, pred=pred, control=self._controls[cond.cell_type], de=self.de(cond))
            row = {CELL_TYPE: cond.cell_type, DRUG: cond.drug, DOSE: cond.dose, "n_true": len(true), "n_pred": len(pred)}
            row.update({m.name: m(data) for m in self.metrics})
            rows.append(row)
        return pd.DataFrame(rows)

    def score_predictor(self, predict_many: Callable) -> pd.DataFrame:
        return self.score(predict_many(self.conditions, self.controls))
