"""Calibrated scores: a metric's raw value placed between a reference prediction's value (0) and its
best value (1), per condition or over a frame of conditions. The headline's reference is the mean
baseline (`train_mean`, column `<metric>_base`); "no change" (the real controls, `<metric>_floor`)
is the second one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from metrics.registry import METRICS

FLOOR_GAP = 1e-12  # a reference this close to the best value leaves nothing to calibrate (score 0)
BASE, FLOOR = "_base", "_floor"  # suffixes of the columns holding each reference's raw score


def calibrate(score, floor, best: float | np.ndarray):
    """(score - floor) / (best - floor): 0 = the reference, 1 = the metric's best value, below 0 =
    worse than the reference. Capped at 1 (rounding), never NaN for finite inputs: 0 where the
    reference is already at the best value. For a lower-is-better distance with best 0 this is
    1 - score/floor."""
    score, floor = np.asarray(score, dtype=float), np.asarray(floor, dtype=float)
    gap = best - floor
    room = np.abs(gap) > FLOOR_GAP
    return np.minimum(np.where(room, (score - floor) / np.where(room, gap, 1.0), 0.0), 1.0)


def calibrated(frame: pd.DataFrame, metric: str, reference: str = BASE) -> float:
    """Calibrated aggregate of `metric` over the rows of a per-condition frame: `calibrate` applied
    to the means of score and reference over the conditions where both are defined (a ratio of
    means: conditions where the reference leaves more room weigh more, and one condition whose
    reference sits at the best value cannot dominate). NaN when no condition is defined."""
    m = METRICS[metric]
    score, ref = frame[metric].to_numpy(dtype=float), frame[metric + reference].to_numpy(dtype=float)
    both = np.isfinite(score) & np.isfinite(ref)
    if not both.any():
        return float("nan")
    return float(calibrate(score[both].mean(), ref[both].mean(), m.best))
