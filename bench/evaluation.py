"""Scoring predictions against the real cells of each condition, with every registered metric.

Three rules make scores comparable across predictors (docs/metrics.md):
- every predicted set is scored at the size of the truth: a seeded sample of as many predicted cells
  as the condition has true cells, so more or duplicated cells earn nothing;
- each metric is calibrated per condition: 0 = the real control cells used as the prediction, 1 =
  the metric's best value (metrics score "no change" at their chance level, docs/metrics.md);
- a replicate reference (half of the true cells predicting the other half) is shown beside the
  scores, never used as a divisor.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DE_UNS_KEY, DOSE, DRUG, Condition, RowIndex, conditions_of
from metrics import METRICS, ConditionData, Metric, SplitData, get_metrics
from metrics.de import de_key, mean_var, rank_by_abs_t, rank_de_genes
from predictors.base import dense

# Bytes of control-sized predictions requested from a predictor at once when scoring it.
PREDICTION_BATCH_BYTES = 1 << 30

REPLICATE_SPLITS = 3  # random halves of the truth averaged into the replicate reference
FLOOR_GAP = 1e-12  # a floor this close to the best value leaves nothing to calibrate (score 0)

# Seeds of the per-condition samples: the predicted set and the control floor use the same draw, so
# a predictor that returns the controls scores exactly the floor.
SAMPLE_SEED, REPLICATE_SEED = 0, 1
CAP_SEED = 7  # the sample that caps an oversized predicted set at the input size


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


INPUT_QUANTILE = 0.9  # the controls handed over per condition cover this share of conditions' cell counts


def input_size_of(adata: ad.AnnData, conditions: Iterable[Condition], control: str = CONTROL) -> int:
    """Controls to hand a predictor per condition: the smallest power of two at least the
    INPUT_QUANTILE quantile of the cell counts of `conditions` (the run passes its training
    conditions). Scored sets larger than that are filled by drawing predicted cells again
    (`fixed_size`), the same rule for every predictor and for the control floor."""
    index = RowIndex(adata.obs)
    counts = [len(index.rows(c.cell_type, c.drug, c.dose)) for c in conditions]
    counts = [n for n in counts if n > 0]
    if not counts:
        raise BenchError("no conditions with cells to size the control input from")
    return 1 << max(0, int(np.ceil(np.quantile(counts, INPUT_QUANTILE))) - 1).bit_length()


def reference_input_size(adata: ad.AnnData, scored: list[Condition], control: str = CONTROL) -> int | None:
    """`input_size_of` the treated conditions of `adata` that are not being scored (for an
    evaluator built without the run's training conditions); None when there are none."""
    others = sorted(set(conditions_of(adata.obs, None, control)) - set(scored))
    return input_size_of(adata, others, control) if others else None


def condition_rng(cond: Condition, purpose: int) -> np.random.Generator:
    """A generator seeded by the condition alone: every predictor gets the same draws."""
    return np.random.default_rng([zlib.crc32(cond.key.encode()), purpose])


def fixed_size(cells: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` rows of `cells`: a random subset when there are at least `n` (the rows themselves when
    exactly `n`), else every row once plus a random draw with replacement for the rest."""
    m = len(cells)
    if m == n:
        return cells
    if m > n:
        return cells[np.sort(rng.choice(m, n, replace=False))]
    return cells[np.concatenate([np.arange(m), rng.integers(0, m, n - m)])]


def calibrate(score, floor, best: float):
    """(score - floor) / (best - floor): 0 = the floor ("no change"), 1 = the metric's best value,
    below 0 = worse than no change. Capped at 1 (rounding), never NaN: 0 where the floor is already
    at the best value. For a lower-is-better distance with best 0 this is 1 - score/floor."""
    score, floor = np.asarray(score, dtype=float), np.asarray(floor, dtype=float)
    gap = best - floor
    room = np.abs(gap) > FLOOR_GAP
    return np.minimum(np.where(room, (score - floor) / np.where(room, gap, 1.0), 0.0), 1.0)


def calibrated(frame: pd.DataFrame, metric: str) -> float:
    """Calibrated aggregate of `metric` over the rows of a per-condition frame: `calibrate` applied
    to the means of score and floor (a ratio of means: conditions where the floor leaves more room
    weigh more, and one condition whose floor sits at the best value cannot dominate)."""
    m = METRICS[metric]
    return float(calibrate(frame[metric].mean(), frame[f"{metric}_floor"].mean(), m.best))


class Evaluator:
    """Holds the real cells of the conditions to score, each cell type's controls and DE genes,
    so a predictor can be scored at every epoch without touching the data again."""

    def __init__(self, adata: ad.AnnData, conditions: Iterable[Condition], control: str = CONTROL,
                 metrics: list[Metric] | None = None, subset_controls: bool = True, input_size: int | None = None):
        self.control = control
        self.metrics = metrics or get_metrics()
        self.conditions = sorted(set(conditions))
        index = RowIndex(adata.obs)
        self._controls: dict[str, np.ndarray] = {}
        self._control_stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for ct in sorted({c.cell_type for c in self.conditions}):
            rows = index.rows(ct, control)
            if rows.size == 0:
                raise BenchError(f"no control cells (label '{control}') for cell type '{ct}'")
            self._controls[ct] = dense(adata.X[rows])
            self._control_stats[ct] = mean_var(self._controls[ct])
        self._true: dict[Condition, np.ndarray] = {}
        for c in self.conditions:
            rows = index.rows(c.cell_type, c.drug, c.dose)
            if rows.size == 0:
                raise BenchError(f"no true cells for condition {c.key}")
            self._true[c] = dense(adata.X[rows])
        # Controls handed to predictors and used as the floor: a seeded subset of `input_size` (False:
        # all of them, for predictions made elsewhere, as `bench score` scores).
        self.input_size = input_size or reference_input_size(adata, self.conditions, control) \
            or max(len(c) for c in self._controls.values())
        self._subset = subset_controls
        self._given = {ct: self._input_controls(ct) if subset_controls else c for ct, c in self._controls.items()}
        self._de = de_lists(adata, {(c.cell_type, c.drug) for c in self.conditions}, control, index)
        self._truth_memo: dict[Condition, dict] = {c: {} for c in self.conditions}
        self._floor = pd.DataFrame(index=range(len(self.conditions)))  # raw control scores, filled lazily
        self._replicate = pd.DataFrame(index=range(len(self.conditions)))

    def _input_controls(self, cell_type: str) -> np.ndarray:
        """The control cells predictors transform for this cell type: `input_size` of them (every
        control when there are fewer), a seeded subset in a seeded order. The size comes from other
        conditions' cell counts (`input_size_of`), never from the scored conditions' cells, so what a
        predictor is handed says nothing about the cells it is scored on (their number tracks the
        drug's toxicity, i.e. its effect)."""
        controls = self._controls[cell_type]
        rng = np.random.default_rng([zlib.crc32(cell_type.encode()), SAMPLE_SEED])
        return controls[rng.permutation(len(controls))[: self.input_size]]

    def input_rows(self, condition: Condition) -> int:
        """How many control cells a predictor transforms for `condition`: the same for every
        condition of a cell type (all its given controls), whatever the condition's true cells."""
        return len(self._given[condition.cell_type])

    def controls_for(self, condition: Condition) -> np.ndarray:
        """A copy of the control cells a predictor transforms for `condition` (and the floor uses)."""
        return self._given[condition.cell_type][: self.input_rows(condition)].copy()

    # What a predictor may see: copies of the controls, through a function with no path back here.
    def control_source(self, rows: int | None = None) -> Callable[[str], np.ndarray]:
        """A plain function: cell type -> a fresh copy of the control cells to transform (the first
        `rows` of the seeded subset of `_input_controls`; all of it when None)."""
        controls = {ct: given[:rows] for ct, given in self._given.items()}
        return lambda cell_type: controls[cell_type].copy()

    def true_cells(self, condition: Condition) -> np.ndarray:
        return self._true[condition]

    def de(self, condition: Condition) -> np.ndarray:
        return self._de[de_key(condition.cell_type, condition.drug)]

    def _selected(self, metrics: list[str] | None) -> list[Metric]:
        return self.metrics if metrics is None else [m for m in self.metrics if m.name in set(metrics)]

    def _validated(self, cond: Condition, pred) -> np.ndarray:
        pred = np.asarray(pred, dtype=np.float32)
        genes = self._true[cond].shape[1]
        if pred.ndim != 2 or pred.shape[1] != genes or pred.shape[0] == 0:
            raise BenchError(f"prediction for {cond.key} has shape {pred.shape}: expected (n_cells>0, {genes})")
        if not np.isfinite(pred.sum(dtype=np.float64)):
            raise BenchError(f"prediction for {cond.key} contains NaN or infinite values")
        return pred

    def cap(self, cond: Condition, cells: np.ndarray) -> np.ndarray:
        """Equal sets for every predictor: at most `input_size` predicted cells (as many as it was
        handed controls; a seeded sample of larger sets, such as knn's and random's training cells),
        all of a set when controls are not subset (`bench score`)."""
        if not self._subset or len(cells) <= self.input_size:
            return cells
        return cells[np.sort(condition_rng(cond, CAP_SEED).choice(len(cells), self.input_size, replace=False))]

    def sample(self, cond: Condition, cells: np.ndarray) -> np.ndarray:
        """The set that is scored: as many of `cells` as the condition has true cells (seeded by the
        condition, the same draw for every predictor)."""
        return fixed_size(cells, len(self._true[cond]), condition_rng(cond, SAMPLE_SEED))

    def collect(self, predict_many: Callable, conditions: list[Condition] | None = None) -> tuple[dict, dict]:
        """Ask a predictor for its cells, conditions grouped by how many controls they transform
        (`input_rows`), in batches of about PREDICTION_BATCH_BYTES (control-sized predictions of every
        sci-Plex3 test condition at once would take tens of GB), keeping at most `input_size` cells of
        each (`cap`). Returns (capped sets, predicted cell counts), keyed by condition."""
        conditions = self.conditions if conditions is None else conditions
        groups: dict[int, list[Condition]] = {}
        for c in conditions:
            groups.setdefault(self.input_rows(c), []).append(c)
        row_bytes = max(given.nbytes // max(len(given), 1) for given in self._given.values())
        sets, counts = {}, {}
        for rows, group in sorted(groups.items()):
            controls = self.control_source(rows)
            size = max(1, PREDICTION_BATCH_BYTES // max(rows * row_bytes, 1))
            for start in range(0, len(group), size):
                batch = group[start : start + size]
                predicted = predict_many(batch, controls)
                for cond in batch:
                    if cond not in predicted:
                        raise BenchError(f"no prediction for {cond.key}")
                    pred = self._validated(cond, predicted[cond])
                    counts[cond] = len(pred)
                    sets[cond] = self.cap(cond, pred)
                del predicted
        return sets, counts

    def _raw(self, whole: dict[Condition, np.ndarray], metrics: list[Metric], truth: dict | None = None,
             de: dict[Condition, np.ndarray] | None = None) -> pd.DataFrame:
        """Raw scores, one row per evaluator condition, of the given predicted sets against the truth
        (or against `truth`, a replacement set of true cells, with its own DE genes `de`). Metrics
        declared `whole_set` see every cell of a set; the others a truth-sized sample of it."""
        rows, sampled = [], []
        for c in self.conditions:
            ct = c.cell_type
            true = self._true[c] if truth is None else truth[c]
            memo = self._truth_memo[c] if truth is None else {}
            genes = self.de(c) if de is None else de[c]

            def data(pred: np.ndarray) -> ConditionData:
                return ConditionData(true=true, pred=pred, control=self._controls[ct], de=genes,
                                     control_stats=self._control_stats[ct], truth_memo=memo)

            full = data(whole[c])
            part = full if truth is not None else data(self.sample(c, whole[c]))
            rows.append({m.name: m(full if m.whole_set else part) for m in metrics if not m.split_level})
            sampled.append(part)
        frame = pd.DataFrame(rows, index=range(len(self.conditions)))
        split_metrics = [m for m in metrics if m.split_level]
        if split_metrics:
            split = SplitData(
                true_means=np.stack([(self._true[c] if truth is None else truth[c]).mean(axis=0, dtype=np.float64) for c in self.conditions]),
                pred_means=np.stack([whole[c].mean(axis=0, dtype=np.float64) for c in self.conditions]),
                control_means=np.stack([self._control_stats[c.cell_type][0] for c in self.conditions]),
                cell_types=np.array([c.cell_type for c in self.conditions]),
                drugs=np.array([c.drug for c in self.conditions]),
                conditions=sampled,
            )
            for m in split_metrics:
                frame[m.name] = m(split)
        return frame[[m.name for m in metrics]]

    def floor(self, metrics: list[Metric]) -> pd.DataFrame:
        """Raw scores of the real controls as the prediction (the controls a predictor is given,
        sampled as a prediction is), per condition."""
        missing = [m for m in metrics if m.name not in self._floor]
        if missing:
            sets = {c: self.controls_for(c) for c in self.conditions}
            # split-level metrics compare conditions with each other: compute them over every metric's floor at once
            self._floor = pd.concat([self._floor, self._raw(sets, missing)], axis=1)
        return self._floor[[m.name for m in metrics]]

    def replicate(self, metrics: list[Metric]) -> pd.DataFrame:
        """Reference scores: a random half of the true cells predicting the other half, averaged over
        REPLICATE_SPLITS halvings; NaN for a condition with fewer than two true cells. The DE genes
        are ranked on the truth halves only (doses pooled, as for the main lists): ranking them on
        every true cell would let the predicting half share the lists' selection noise."""
        missing = [m for m in metrics if m.name not in self._replicate]
        if missing:
            runs = []
            for k in range(REPLICATE_SPLITS):
                halves = {}
                for c in self.conditions:
                    true = self._true[c]
                    order = condition_rng(c, REPLICATE_SEED + k).permutation(len(true))
                    half = max(1, len(true) // 2)
                    halves[c] = (true[order[:half]], true[order[half:]] if len(true) > 1 else true)
                truth = {c: h[1] for c, h in halves.items()}
                runs.append(self._raw({c: h[0] for c, h in halves.items()}, missing, truth=truth, de=self._de_of(truth)))
            mean = sum(runs) / len(runs)
            few = np.array([len(self._true[c]) < 2 for c in self.conditions])
            mean.loc[few, :] = np.nan
            self._replicate = pd.concat([self._replicate, mean], axis=1)
        return self._replicate[[m.name for m in metrics]]

    def _de_of(self, truth: dict[Condition, np.ndarray]) -> dict[Condition, np.ndarray]:
        """DE genes of each condition's (cell type, drug), ranked on the given true cells of all its
        scored doses against the cell type's controls."""
        pairs: dict[tuple[str, str], list[Condition]] = {}
        for c in self.conditions:
            pairs.setdefault((c.cell_type, c.drug), []).append(c)
        out = {}
        for (ct, _), conds in pairs.items():
            ranked = rank_by_abs_t(np.vstack([truth[c] for c in conds]), self._controls[ct], self._control_stats[ct])
            out.update({c: ranked for c in conds})
        return out

    def score(self, predictions: dict[Condition, np.ndarray], metrics: list[str] | None = None,
              replicate: bool = True, counts: dict[Condition, int] | None = None) -> pd.DataFrame:
        """One row per condition: cell_type, drug, dose, n_true, n_pred, each metric (all registered,
        or those named), then per metric its floor, the calibrated `<metric>_norm` and (with
        `replicate`) the replicate reference `<metric>_replicate`. Predictions of any size are sampled
        to the truth's size for the metrics that depend on set size; `whole_set` metrics see every
        predicted cell (at most `input_size` when controls are subset: `cap`). `counts` gives the
        original sizes of already capped sets."""
        chosen = self._selected(metrics)
        sets, sizes = {}, {}
        for c in self.conditions:
            if c not in predictions:
                raise BenchError(f"no prediction for {c.key}")
            pred = self._validated(c, predictions[c])
            sizes[c] = counts[c] if counts is not None else len(pred)
            sets[c] = self.cap(c, pred)
        raw = self._raw(sets, chosen)
        floor = self.floor(chosen)
        columns: dict[str, object] = {
            CELL_TYPE: [c.cell_type for c in self.conditions],
            DRUG: [c.drug for c in self.conditions],
            DOSE: [c.dose for c in self.conditions],
            "n_true": [len(self._true[c]) for c in self.conditions],
            "n_pred": [sizes[c] for c in self.conditions],
        }
        ref = self.replicate(chosen) if replicate else None
        for m in chosen:
            score, base = raw[m.name].to_numpy(), floor[m.name].to_numpy()
            columns.update({m.name: score, f"{m.name}_floor": base, f"{m.name}_norm": calibrate(score, base, m.best)})
            if ref is not None:
                columns[f"{m.name}_replicate"] = ref[m.name].to_numpy()
        frame = pd.DataFrame(columns)
        return frame

    def score_predictor(self, predict_many: Callable, metrics: list[str] | None = None, replicate: bool = True) -> pd.DataFrame:
        """`score` of a predictor's `predict_many`, asked in batches (see `collect`)."""
        sets, counts = self.collect(predict_many)
        return self.score(sets, metrics, replicate, counts)
