"""`Evaluator`: one object per set of scored conditions that holds their truth, the controls handed
to predictors and the references, and scores a predictor's sets into one frame per call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.evaluation.references import References
from bench.evaluation.sampling import Sampling, reference_input_size
from bench.evaluation.scoring import collect, raw_scores, validated
from bench.evaluation.truth import Truth
from bench.record import ACTIVE, norm_column, replicate_column
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition, RowIndex, conditions_of
from metrics import Metric, get_metrics
from metrics.calibration import BASE, FLOOR, calibrate
from predictors.base import dense
from predictors.floors import mean_shifts, shifted


class Evaluator:
    """Holds the real cells of the conditions to score, each cell type's controls and DE genes,
    so a predictor can be scored at every epoch without touching the data again."""

    def __init__(self, adata: ad.AnnData, conditions: Iterable[Condition], control: str = CONTROL,
                 metrics: list[Metric] | None = None, subset_controls: bool = True, input_size: int | None = None,
                 training: Iterable[Condition] | None = None):
        """`training`: the conditions the mean baseline averages (default: every treated condition of
        `adata` that is not scored); with none, the baseline is the controls ("no change")."""
        self.control = control
        self.metrics = metrics or get_metrics()
        self.truth = Truth(adata, conditions, control)
        self.conditions = self.truth.conditions
        self._controls = self.truth.controls  # each cell type's real control cells
        # Controls handed to predictors and used as the floor: a seeded subset of `input_size` (False:
        # all of them, for predictions made elsewhere, as `bench score` scores).
        size = input_size or reference_input_size(adata, self.conditions, control) or max(len(c) for c in self._controls.values())
        self.sampling = Sampling(self.truth, size, subset_controls)
        self.input_size = self.sampling.input_size
        self.references = References(self.truth, self.sampling, self._baseline(adata, training))

    def _baseline(self, adata: ad.AnnData, training: Iterable[Condition] | None) -> dict[Condition, np.ndarray] | None:
        """The mean baseline's scored set per condition: exactly what `train_mean` returns when fitted
        on `training` (clipped and capped as every prediction is); None without training conditions."""
        known = set(conditions_of(adata.obs, None, self.control)) - set(self.conditions) if training is None else set(training)
        self.training = sorted(known)  # the conditions the mean baseline averages (empty: it is the controls)
        if not known:
            return None
        index = RowIndex(adata.obs)
        shifts = mean_shifts(known, lambda ct, drug, dose: dense(adata.X[index.rows(ct, drug, dose)]),
                             lambda ct: dense(adata.X[index.rows(ct, self.control)]))
        return {c: self.sampling.cap(c, validated(self.truth, c, shifted(shifts, c, self.controls_for(c))))
                for c in self.conditions}

    def training_drugs(self) -> set[str]:
        """The drugs whose conditions the mean baseline averages."""
        return {c.drug for c in self.training}

    def controls_for(self, condition: Condition) -> np.ndarray:
        """A copy of the control cells a predictor transforms for `condition` (and the floor uses)."""
        return self.sampling.controls_for(condition)

    def control_source(self, rows: int | None = None) -> Callable[[str], np.ndarray]:
        """A plain function: cell type -> a fresh copy of the control cells to transform."""
        return self.sampling.control_source(rows)

    def true_cells(self, condition: Condition) -> np.ndarray:
        """The real treated cells `condition` is scored against."""
        return self.truth.cells[condition]

    def sample(self, cond: Condition, cells: np.ndarray) -> np.ndarray:
        """The truth-sized, condition-seeded sample of `cells` that is scored (`Sampling.sample`)."""
        return self.sampling.sample(cond, cells)

    def _de_of(self, truth: dict[Condition, np.ndarray]) -> dict[Condition, np.ndarray]:
        """DE genes ranked on replacement true cells, as the replicate reference ranks them."""
        return self.references.de_of(truth)

    def _raw(self, whole: dict[Condition, np.ndarray], metrics: list[Metric], truth: dict | None = None,
             de: dict[Condition, np.ndarray] | None = None) -> pd.DataFrame:
        """Raw scores of predicted sets, one row per condition (`scoring.raw_scores`)."""
        return raw_scores(self.truth, self.sampling, whole, metrics, truth, de)

    def _selected(self, metrics: list[str] | None) -> list[Metric]:
        return self.metrics if metrics is None else [m for m in self.metrics if m.name in set(metrics)]

    def collect(self, predict_many: Callable, conditions: list[Condition] | None = None) -> tuple[dict, dict]:
        """A predictor's capped sets and predicted cell counts, asked in batches (`scoring.collect`)."""
        return collect(self.truth, self.sampling, predict_many, self.conditions if conditions is None else conditions)

    def _scored_sets(self, predictions: Mapping[Condition, np.ndarray]) -> tuple[dict, dict]:
        """Each condition's set as it is scored (validated, clipped, capped: `scoring.validated`,
        `Sampling.cap`) and the number of cells it had."""
        sets, sizes = {}, {}
        for c in self.conditions:
            if c not in predictions:
                raise BenchError(f"no prediction for {c.key}")
            pred = validated(self.truth, c, predictions[c])
            sizes[c] = len(pred)
            sets[c] = self.sampling.cap(c, pred)
        return sets, sizes

    def raw(self, predictions: Mapping[Condition, np.ndarray], metrics: list[str] | None = None) -> pd.DataFrame:
        """The raw scores alone, one row per condition (in `conditions` order), one column per metric
        (all registered, or those named): the sets validated, capped and sampled exactly as `score`
        scores them, without the references (floor, mean baseline, replicate) or calibration. For
        reading bench next to tools that report raw scores only."""
        return self._raw(self._scored_sets(predictions)[0], self._selected(metrics))

    def score(self, predictions: Mapping[Condition, np.ndarray], metrics: list[str] | None = None,
              replicate: bool = True, counts: dict[Condition, int] | None = None) -> pd.DataFrame:
        """One row per condition: cell_type, drug, dose, n_true, n_pred, active (the truth has a
        significant DE gene), each metric (all registered, or those named), then per metric the raw
        scores of the control floor (`_floor`) and the mean baseline (`_base`), the score calibrated
        against the baseline `<metric>_norm` and (with
        `replicate`) the replicate reference `<metric>_replicate`. Predictions of any size are sampled
        to the truth's size for the metrics that depend on set size; `whole_set` metrics see every
        predicted cell (at most `input_size` when controls are subset: `cap`). `counts` gives the
        original sizes of already capped sets."""
        chosen = self._selected(metrics)
        sets, sizes = self._scored_sets(predictions)
        if counts is not None:
            sizes = {c: counts[c] for c in self.conditions}
        raw = self._raw(sets, chosen)
        floor, base = self.references.floor(chosen), self.references.baseline(chosen)
        columns: dict[str, object] = {
            CELL_TYPE: [c.cell_type for c in self.conditions],
            DRUG: [c.drug for c in self.conditions],
            DOSE: [c.dose for c in self.conditions],
            "n_true": [len(self.truth.cells[c]) for c in self.conditions],
            "n_pred": [sizes[c] for c in self.conditions],
            ACTIVE: [self.truth.active(c) for c in self.conditions],
        }
        ref = self.references.replicate(chosen) if replicate else None
        for m in chosen:
            score, zero = raw[m.name].to_numpy(), base[m.name].to_numpy()
            columns.update({m.name: score, m.name + FLOOR: floor[m.name].to_numpy(), m.name + BASE: zero,
                            norm_column(m.name): calibrate(score, zero, m.best)})
            if ref is not None:
                columns[replicate_column(m.name)] = ref[m.name].to_numpy()
        return pd.DataFrame(columns)

    def score_predictor(self, predict_many: Callable, metrics: list[str] | None = None, replicate: bool = True) -> pd.DataFrame:
        """`score` of a predictor's `predict_many`, asked in batches (see `collect`)."""
        sets, counts = self.collect(predict_many)
        return self.score(sets, metrics, replicate, counts)
