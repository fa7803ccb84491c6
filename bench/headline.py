"""The headline score: one calibrated number per predictor that "no change" cannot win, with 95%
intervals from a bootstrap over held-out drugs (a drug's conditions are not independent).

It is the mean of four calibrated scores (0 = the real controls, 1 = perfect): the mean change
(`delta_DE50`), DE recovery (`overlap_at_N`), the distribution (`energy_DE50`) and discrimination
among the split's conditions (`discrimination_score_l1`); each component enters at no less than -1
(twice as far from the truth as no change, for a distance). See docs/metrics.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bench.schema import DRUG
from metrics import METRICS
from metrics.calibration import calibrate

HEADLINE_METRICS = ("delta_DE50", "overlap_at_N", "energy_DE50", "discrimination_score_l1")
COMPONENT_MIN = -1.0  # a component enters the headline at no less than this: one failure cannot drown the rest
BOOTSTRAP = 2000
LEVEL = 0.95
POWER = 0.8  # the chance of seeing a true difference that the stated detectable difference refers to


def headline_metrics(frame: pd.DataFrame | None = None) -> list[str]:
    """The headline's registered components (those present in `frame`, when given)."""
    return [m for m in HEADLINE_METRICS if m in METRICS and (frame is None or m in frame)]


def _drug_sums(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per drug: condition counts, and sums of each component's score and floor ((drugs, k) arrays)."""
    grouped = frame.groupby(DRUG, sort=True)
    counts = grouped.size().to_numpy(dtype=float)
    scores = grouped[names].sum().to_numpy(dtype=float)
    floors = grouped[[f"{m}_floor" for m in names]].sum().to_numpy(dtype=float)
    return counts, scores, floors


def _from_sums(counts, scores: np.ndarray, floors: np.ndarray, names: list[str]) -> np.ndarray:
    """Headline from condition counts and summed scores/floors (last axis: components): the ratio of
    means of each component calibrated, clipped below at COMPONENT_MIN, then their mean."""
    n = np.asarray(counts, dtype=float)[..., None]
    best = np.array([METRICS[m].best for m in names])
    return np.maximum(calibrate(scores / n, floors / n, best), COMPONENT_MIN).mean(axis=-1)


def headline(frame: pd.DataFrame) -> float:
    """The headline score of one per-condition frame (rows: test conditions)."""
    names = headline_metrics(frame)
    if not names or frame.empty:
        return float("nan")
    counts, scores, floors = _drug_sums(frame, names)
    return float(_from_sums(counts.sum(), scores.sum(axis=0), floors.sum(axis=0), names))


def _resampled(frame: pd.DataFrame, names: list[str], draws: np.ndarray) -> np.ndarray:
    """Headline of each bootstrap draw of drugs (`draws`: (B, drugs) indices into the sorted drugs)."""
    counts, scores, floors = _drug_sums(frame, names)
    return _from_sums(counts[draws].sum(axis=1), scores[draws].sum(axis=1), floors[draws].sum(axis=1), names)


def _draws(n_drugs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_drugs, size=(BOOTSTRAP, n_drugs))


def interval(frame: pd.DataFrame, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (LEVEL) of the headline over held-out drugs."""
    names = headline_metrics(frame)
    n_drugs = frame[DRUG].nunique()
    if not names or n_drugs < 2:
        return float("nan"), float("nan")
    boot = _resampled(frame, names, _draws(n_drugs, seed))
    tail = (1 - LEVEL) / 2
    return float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, seed: int = 0) -> dict:
    """Is `a` ahead of `b` on the headline? Both per-condition frames over the same test conditions.
    The drugs are resampled together (paired bootstrap interval of the difference), and a one-sided
    Wilcoxon signed-rank test is done over per-drug headline differences."""
    names = [m for m in headline_metrics(a) if m in b]
    keys = ["cell_type", DRUG, "dose"]
    merged = a.merge(b, on=keys, suffixes=("_a", "_b"))
    fa = merged[keys + [f"{m}{s}_a" for m in names for s in ("", "_floor")]].rename(columns=lambda c: c.removesuffix("_a"))
    fb = merged[keys + [f"{m}{s}_b" for m in names for s in ("", "_floor")]].rename(columns=lambda c: c.removesuffix("_b"))
    drugs = sorted(merged[DRUG].unique())
    out = {"drugs": len(drugs), "difference": headline(fa) - headline(fb)}
    if len(drugs) < 2:
        return {**out, "low": float("nan"), "high": float("nan"), "p": float("nan"), "ahead": 0}
    draws = _draws(len(drugs), seed)
    diff = _resampled(fa, names, draws) - _resampled(fb, names, draws)
    tail = (1 - LEVEL) / 2
    per_drug = np.array([headline(fa[fa[DRUG] == d]) - headline(fb[fb[DRUG] == d]) for d in drugs])
    p = float(stats.wilcoxon(per_drug, alternative="greater").pvalue) if np.any(per_drug) else 1.0
    return {**out, "low": float(np.quantile(diff, tail)), "high": float(np.quantile(diff, 1 - tail)), "p": p,
            "ahead": int((per_drug > 0).sum()), "sd": float(per_drug.std(ddof=1))}


def detectable_difference(sd: float, n_drugs: int, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true headline difference a paired test over `n_drugs` drugs (two-sided, at
    1 - `level`) finds with probability `power`, when per-drug differences spread with `sd`:
    (z_(1-alpha/2) + z_power) * sd / sqrt(n) (normal approximation)."""
    if n_drugs < 2 or not np.isfinite(sd):
        return float("nan")
    z = stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(power)
    return float(z * sd / np.sqrt(n_drugs))
