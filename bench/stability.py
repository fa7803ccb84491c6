"""How far a headline ranking can be trusted: its agreement across model seeds and split seeds
(Kendall tau), and which neighbours in it are separated by their drug-level paired interval."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from bench.headline import detectable_difference, headline, paired_comparison


def mean_kendall_tau(rankings: list[pd.Series]) -> tuple[float, int]:
    """Mean Kendall tau over pairs of score vectors (predictor -> score) on their shared
    predictors, and the number of pairs; NaN when fewer than two vectors share two predictors."""
    taus = []
    for a, b in combinations(rankings, 2):
        shared = a.index.intersection(b.index)
        if len(shared) >= 2:
            tau = stats.kendalltau(a[shared], b[shared]).statistic
            taus.append(0.0 if np.isnan(tau) else float(tau))
    return (float(np.mean(taus)) if taus else float("nan")), len(taus)


def headline_scores(frames: dict[str, pd.DataFrame]) -> pd.Series:
    """predictor -> headline of its per-condition frame."""
    return pd.Series({name: headline(frame) for name, frame in frames.items() if not frame.empty}, dtype=float)


def separations(ordered: list[str], frames: dict[str, pd.DataFrame]) -> list[dict]:
    """For each adjacent pair of `ordered` (best first), the paired drug-bootstrap comparison."""
    return [{"above": a, "below": b, **paired_comparison(frames[a], frames[b])} for a, b in zip(ordered, ordered[1:])]


def verdict(pairs: list[dict]) -> str:
    """The ranking written with `>` where the drug-level 95% interval separates neighbours and `≈`
    where it does not: what the intervals support, and nothing more."""
    if not pairs:
        return ""
    text = pairs[0]["above"]
    for pair in pairs:
        separated = not np.isnan(pair["low"]) and pair["low"] > 0
        text += (" > " if separated else " ≈ ") + pair["below"]
    return text


def detectable(pairs: list[dict]) -> tuple[float, int]:
    """The detectable headline difference of a ranking (80% power, 5% level) from the median spread
    of per-drug differences between neighbours, and the number of drugs it refers to."""
    sds = [p["sd"] for p in pairs if np.isfinite(p.get("sd", np.nan))]
    n = max((p["drugs"] for p in pairs), default=0)
    return (detectable_difference(float(np.median(sds)), n) if sds else float("nan")), n
