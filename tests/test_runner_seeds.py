"""Seeds: on CPU the same seed gives the same numbers (a random and a trainable predictor, run
twice); another seed gives other numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.cli import main


def per_condition(out: Path, predictor: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(out / "runs" / predictor / f"seed{seed}" / "conditions.csv")


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    sweep = ["run", "--data", "smoke", "--predictors", "random,cVAE", "--epochs", "1", "--seeds", "0,1"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*sweep, "--out", str(first)]) == 0
    assert main([*sweep, "--out", str(second)]) == 0
    for predictor in ("random", "cVAE"):
        for seed in (0, 1):
            pd.testing.assert_frame_equal(per_condition(first, predictor, seed), per_condition(second, predictor, seed),
                                          check_exact=True, obj=f"{predictor} seed {seed}")
        a, b = per_condition(first, predictor, 0), per_condition(first, predictor, 1)
        assert not a["mean"].equals(b["mean"]), f"{predictor}: seeds 0 and 1 gave identical scores"
