"""Raw metric scores of predicted sets against the truth, and asking a predictor for its sets in
batches that fit in memory."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.evaluation.sampling import Sampling
from bench.evaluation.truth import Truth
from bench.schema import Condition
from metrics import ConditionData, Metric, SplitData

# Bytes of control-sized predictions requested from a predictor at once when scoring it.
PREDICTION_BATCH_BYTES = 1 << 30


def validated(real: Truth, cond: Condition, pred) -> np.ndarray:
    """`pred` as float32 cells over the truth's genes, or a one-line error for a malformed set. The
    one output policy: where the data hold no negative value (log-normalised expression), every
    predicted set is clipped at 0, whichever predictor made it (docs/baselines.md)."""
    pred = np.asarray(pred, dtype=np.float32)
    genes = real.cells[cond].shape[1]
    if pred.ndim != 2 or pred.shape[1] != genes or pred.shape[0] == 0:
        raise BenchError(f"prediction for {cond.key} has shape {pred.shape}: expected (n_cells>0, {genes})")
    low, high = pred.min(), pred.max()  # NaN propagates through both
    if not (np.isfinite(low) and np.isfinite(high)):
        raise BenchError(f"prediction for {cond.key} contains NaN or infinite values")
    return np.maximum(pred, 0.0) if real.non_negative else pred


def collect(real: Truth, sampling: Sampling, predict_many: Callable, conditions: list[Condition]) -> tuple[dict, dict]:
    """Ask a predictor for its cells, conditions grouped by how many controls they transform
    (`input_rows`), in batches of about PREDICTION_BATCH_BYTES (control-sized predictions of every
    sci-Plex3 test condition at once would take tens of GB), keeping at most `input_size` cells of
    each (`cap`). Returns (capped sets, predicted cell counts), keyed by condition."""
    groups: dict[int, list[Condition]] = {}
    for c in conditions:
        groups.setdefault(sampling.input_rows(c), []).append(c)
    row_bytes = max(given.nbytes // max(len(given), 1) for given in sampling.given.values())
    sets, counts = {}, {}
    for rows, group in sorted(groups.items()):
        controls = sampling.control_source(rows)
        size = max(1, PREDICTION_BATCH_BYTES // max(rows * row_bytes, 1))
        for start in range(0, len(group), size):
            batch = group[start : start + size]
            predicted = predict_many(batch, controls)
            for cond in batch:
                if cond not in predicted:
                    raise BenchError(f"no prediction for {cond.key}")
                pred = validated(real, cond, predicted[cond])
                counts[cond] = len(pred)
                sets[cond] = sampling.cap(cond, pred)
            del predicted
    return sets, counts


def raw_scores(real: Truth, sampling: Sampling, whole: dict[Condition, np.ndarray], metrics: list[Metric],
               truth: dict | None = None, de: dict[Condition, np.ndarray] | None = None) -> pd.DataFrame:
    """Raw scores, one row per scored condition, of the given predicted sets against the truth
    (or against `truth`, a replacement set of true cells, with its own DE genes `de`). Metrics
    declared `whole_set` see every cell of a set; the others a truth-sized sample of it."""
    rows, sampled = [], []
    for c in real.conditions:
        ct = c.cell_type
        true = real.cells[c] if truth is None else truth[c]
        memo = real.memo[c] if truth is None else {}
        genes = real.de(c) if de is None else de[c]

        def data(pred: np.ndarray) -> ConditionData:
            return ConditionData(true=true, pred=pred, control=real.controls[ct], de=genes,
                                 control_stats=real.control_stats[ct], truth_memo=memo)

        full = data(whole[c])
        part = full if truth is not None else data(sampling.sample(c, whole[c]))
        rows.append({m.name: m(full if m.whole_set else part) for m in metrics if not m.split_level})
        sampled.append(part)
    frame = pd.DataFrame(rows, index=range(len(real.conditions)))
    split_metrics = [m for m in metrics if m.split_level]
    if split_metrics:
        split = SplitData(
            true_means=np.stack([(real.cells[c] if truth is None else truth[c]).mean(axis=0, dtype=np.float64) for c in real.conditions]),
            pred_means=np.stack([whole[c].mean(axis=0, dtype=np.float64) for c in real.conditions]),
            control_means=np.stack([real.control_stats[c.cell_type][0] for c in real.conditions]),
            cell_types=np.array([c.cell_type for c in real.conditions]),
            drugs=np.array([c.drug for c in real.conditions]),
            conditions=sampled,
        )
        for m in split_metrics:
            frame[m.name] = m(split)
    return frame[[m.name for m in metrics]]
