"""Calibrated scores: a metric's raw value placed between its "no change" floor (0, the real control
cells as the prediction) and its best value (1), per condition or over a frame of conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from metrics.registry import METRICS

FLOOR_GAP = 1e-12  # a floor this close to the best value leaves nothing to calibrate (score 0)


def calibrate(score, floor, best: float | np.ndarray):
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
