"""Uncertainty of a comparison: is the top predictor significantly ahead of the next one?

The paired test works over test conditions: each predictor's per-condition score (already averaged
over seeds) is paired by condition, and the differences go through a one-sided Wilcoxon signed-rank
test (H1: the first predictor scores higher) with a t-based 95% confidence interval of the mean
difference. See docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
MIN_CONDITIONS = 5  # below this even a perfect sweep of signs cannot reach p < 0.05 one-sided (2**-5 = 0.031)


def mean_difference_ci(diff: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided t confidence interval of the mean of paired differences."""
    n = diff.size
    half = stats.t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n)
    return float(diff.mean() - half), float(diff.mean() + half)


def paired_test(a: pd.Series, b: pd.Series, alpha: float = ALPHA) -> str:
    """One line: is `a` (top predictor) significantly ahead of `b` (the next) over the paired test
    conditions? Series share their index (conditions); missing pairs are dropped."""
    pairs = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    diff = (pairs["a"] - pairs["b"]).to_numpy(dtype=float)
    n = diff.size
    if n < MIN_CONDITIONS:
        return f"not tested: {n} paired condition(s), at least {MIN_CONDITIONS} needed."
    low, high = mean_difference_ci(diff)
    effect = f"mean difference {diff.mean():+.4f} (95% CI {low:+.4f} to {high:+.4f}), ahead on {int((diff > 0).sum())}/{n}"
    if not np.any(diff):
        return f"{effect}; identical scores on every condition, no difference to test."
    p = float(stats.wilcoxon(diff, alternative="greater").pvalue)
    verdict = "significantly ahead" if p < alpha else "not significantly ahead"
    return f"{effect}; Wilcoxon signed-rank one-sided p = {p:.3g}: {verdict} at {alpha:g}."
