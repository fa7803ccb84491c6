"""Scoring predictions against the real cells of each condition, with every registered metric."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition, same_dose
from metrics import METRICS, ConditionData, Metric, get_metrics
from metrics.de import de_key, mean_var, rank_de_genes
from predictors.base import dense

# Bytes of control-sized predictions requested from a predictor at once when scoring it.
PREDICTION_BATCH_BYTES = 1 << 30

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


MIN_GAP = 1e-6  # a replicate must beat the control floor by more than this for a defined scale


def calibrate(score, floor, ceiling, higher_is_better: bool):
    """(score - floor) / (ceiling - floor): 0 = the real controls ("no change"), 1 = a replicate
    half of the truth. Not clipped; NaN where the replicate does not beat the floor by MIN_GAP
    (the scale is then undefined). Works on floats and on aligned pandas columns."""
    gap = ceiling - floor
    defined = (gap > MIN_GAP) if higher_is_better else (gap < -MIN_GAP)
    return np.where(defined, (score - floor) / np.where(defined, gap, 1.0), np.nan)


def normalised(frame: pd.DataFrame, metric: str) -> float:
    """Calibrated aggregate of `metric` over the rows of a per-condition frame: `calibrate` applied
    to the means of score, floor and ceiling (a ratio of means, not a mean of the per-condition
    `<metric>_norm` column, which explodes where one condition's floor and ceiling nearly coincide)."""
    score, floor, ceiling = (frame[c].mean() for c in (metric, f"{metric}_floor", f"{metric}_ceiling"))
    return float(calibrate(score, floor, ceiling, METRICS[metric].higher_is_better))


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
        self._control_stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for ct in sorted({c.cell_type for c in self.conditions}):
            rows = np.flatnonzero((cell_types == ct) & (drugs == control))
            if rows.size == 0:
                raise BenchError(f"no control cells (label '{control}') for cell type '{ct}'")
            self._controls[ct] = dense(adata.X[rows])
            self._control_stats[ct] = mean_var(self._controls[ct])
        self._true: dict[Condition, np.ndarray] = {}
        for c in self.conditions:
            rows = np.flatnonzero((cell_types == c.cell_type) & (drugs == c.drug) & same_dose(doses, c.dose))
            self._true[c] = dense(adata.X[rows])
        self._de = de_lists(adata, {(c.cell_type, c.drug) for c in self.conditions}, control)
        self._floor = {c: self._metrics(c, self._true[c], self._controls[c.cell_type]) for c in self.conditions}
        self._ceiling = {c: self._replicate_ceiling(c) for c in self.conditions}

    def _metrics(self, cond: Condition, true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        ct = cond.cell_type
        data = ConditionData(true=true, pred=pred, control=self._controls[ct], de=self.de(cond), control_stats=self._control_stats[ct])
        return {m.name: m(data) for m in self.metrics}

    def _replicate_ceiling(self, cond: Condition) -> dict[str, float]:
        """Every metric with one random half of the true cells predicting the other half."""
        true = self._true[cond]
        if len(true) < 2:
            return {m.name: float("nan") for m in self.metrics}
        order = np.random.default_rng(0).permutation(len(true))
        half = len(true) // 2
        return self._metrics(cond, true[order[:half]], true[order[half:]])

    def reference(self, condition: Condition) -> tuple[dict[str, float], dict[str, float]]:
        """(floor, ceiling): the scores of the control cells and of a replicate half of the truth."""
        return self._floor[condition], self._ceiling[condition]

    def controls(self, cell_type: str) -> np.ndarray:
        return self._controls[cell_type]

    def true_cells(self, condition: Condition) -> np.ndarray:
        return self._true[condition]

    def de(self, condition: Condition) -> np.ndarray:
        return self._de[de_key(condition.cell_type, condition.drug)]

    def score(self, predictions: dict[Condition, np.ndarray], conditions: list[Condition] | None = None) -> pd.DataFrame:
        """One row per condition (all, or `conditions`): cell_type, drug, dose, n_true, n_pred, every
        metric, then for each metric its floor, its ceiling and the calibrated `<metric>_norm`."""
        rows = []
        for cond in self.conditions if conditions is None else conditions:
            pred = np.asarray(predictions[cond], dtype=np.float32)
            true = self._true[cond]
            if pred.ndim != 2 or pred.shape[1] != true.shape[1] or pred.shape[0] == 0:
                raise BenchError(
                    f"prediction for {cond.key} has shape {pred.shape}: expected (n_cells>0, {true.shape[1]})"
                )
            if not np.isfinite(pred).all():
                raise BenchError(f"prediction for {cond.key} contains NaN or infinite values")
            row = {CELL_TYPE: cond.cell_type, DRUG: cond.drug, DOSE: cond.dose, "n_true": len(true), "n_pred": len(pred)}
            scores = self._metrics(cond, true, pred)
            row.update(scores)
            row.update({f"{k}_floor": self._floor[cond][k] for k in scores})
            row.update({f"{k}_ceiling": self._ceiling[cond][k] for k in scores})
            rows.append(row)
        frame = pd.DataFrame(rows)
        for m in self.metrics:
            frame[f"{m.name}_norm"] = calibrate(frame[m.name], frame[f"{m.name}_floor"], frame[f"{m.name}_ceiling"], m.higher_is_better)
        return frame

    def score_predictor(self, predict_many: Callable) -> pd.DataFrame:
        """Score in batches of conditions, holding one batch's predictions at a time: control-sized
        predictions of every sci-Plex3 test condition at once would take tens of GB."""
        largest = max(c.nbytes for c in self._controls.values())
        size = max(1, PREDICTION_BATCH_BYTES // max(largest, 1))
        batches = [self.conditions[i : i + size] for i in range(0, len(self.conditions), size)]
        return pd.concat([self.score(predict_many(b, self.controls), b) for b in batches], ignore_index=True)
