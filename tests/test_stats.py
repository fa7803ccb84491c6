"""The paired test over test conditions: detects a consistent lead, not a noisy tie, and copes with
ties, too few conditions and unaligned series; the leaderboard shows its verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.cli import main
from bench.stats import MIN_CONDITIONS, mean_difference_ci, paired_test


def conditions(n: int) -> pd.MultiIndex:
    return pd.MultiIndex.from_tuples([("A549", f"drug{i}", 1.0) for i in range(n)], names=["cell_type", "drug", "dose"])


def test_consistent_lead_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    base = pd.Series(rng.normal(size=30), index=conditions(30))
    lead = paired_test(base + 0.2 + rng.normal(scale=0.05, size=30), base)
    assert "\n" not in lead and "ahead on 30/30" in lead and ": significantly ahead at 0.05" in lead
    noise = paired_test(base + rng.normal(scale=0.2, size=30), base)
    assert "not significantly ahead" in noise
    behind = paired_test(base, base + 0.2)  # the first one is behind: one-sided test says no
    assert "not significantly ahead" in behind and "mean difference -0.2000" in behind


def test_p_value_is_scipys_one_sided_wilcoxon():
    rng = np.random.default_rng(1)
    a, b = pd.Series(rng.normal(0.1, 1, 12)), pd.Series(rng.normal(size=12))
    expected = sps.wilcoxon(a - b, alternative="greater").pvalue
    assert f"p = {expected:.3g}:" in paired_test(a, b)


def test_ties_too_few_conditions_and_alignment():
    base = pd.Series(np.arange(10.0), index=conditions(10))
    assert "identical scores on every condition" in paired_test(base, base.copy())
    few = paired_test(base.iloc[: MIN_CONDITIONS - 1], base.iloc[: MIN_CONDITIONS - 1] - 1)
    assert few.startswith(f"not tested: {MIN_CONDITIONS - 1} paired")
    shuffled = (base - 1).sample(frac=1, random_state=0)  # pairs by condition, not by position
    assert "mean difference +1.0000" in paired_test(base, shuffled)


def test_confidence_interval_covers_the_mean_difference():
    diff = np.array([0.1, 0.3, 0.2, 0.4, 0.0])
    low, high = mean_difference_ci(diff)
    assert low < diff.mean() < high
    assert np.isclose(high - diff.mean(), sps.t.ppf(0.975, 4) * diff.std(ddof=1) / np.sqrt(5))


def test_leaderboard_reports_the_paired_test(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--data", "smoke", "--predictors", "control_mean,train_mean,oracle", "--seeds", "0,1", "--out", str(out)]) == 0
    board = (out / "leaderboard.md").read_text()
    line = next(l for l in board.splitlines() if l.startswith("Paired test over"))
    assert "Wilcoxon signed-rank one-sided p =" in line and "95% CI" in line
