"""The headline score: one calibrated number per predictor, 0 = the mean baseline (`train_mean`: the
training drugs' mean change per cell type and dose), 1 = perfect, with 95% intervals from a bootstrap
over held-out drugs (a drug's conditions are not independent). The same score against "no change"
(the real controls as the prediction) is kept beside it.

It is the mean of four calibrated scores: the mean change (`delta_DE50`), DE recovery from the
predicted change (`de_recall`), the distribution (`energy_DE50`, an unbiased energy distance) and
discrimination among the split's conditions (`discrimination_score_l1`); each component is a ratio
of means over the conditions where it is defined (the DE-set components skip inert conditions) and
enters at no less than -1 (twice as far from the truth as the reference, for a distance). See
docs/metrics.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bench.schema import DRUG
from metrics import METRICS
from metrics.calibration import BASE, FLOOR, calibrate

HEADLINE_METRICS = ("delta_DE50", "de_recall", "energy_DE50", "discrimination_score_l1")
COMPONENT_MIN = -1.0  # a component enters the headline at no less than this: one failure cannot drown the rest
BOOTSTRAP = 2000
LEVEL = 0.95
POWER = 0.8  # the chance of seeing a true difference that the stated detectable difference refers to


def headline_metrics(frame: pd.DataFrame | None = None) -> list[str]:
    """The headline's registered components (those present in `frame`, when given)."""
    return [m for m in HEADLINE_METRICS if m in METRICS and (frame is None or m in frame)]


def _drug_sums(frame: pd.DataFrame, names: list[str], reference: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per drug and component ((drugs, k) arrays): how many conditions define it, and the sums of its
    score and of the reference's score over them."""
    score = frame[names].to_numpy(dtype=float)
    ref = frame[[m + reference for m in names]].to_numpy(dtype=float)
    defined = np.isfinite(score) & np.isfinite(ref)
    parts = pd.DataFrame(np.hstack([defined, np.where(defined, score, 0.0), np.where(defined, ref, 0.0)]), index=frame.index)
    summed = parts.groupby(frame[DRUG].to_numpy(), sort=True).sum().to_numpy(dtype=float)
    k = len(names)
    return summed[:, :k], summed[:, k : 2 * k], summed[:, 2 * k :]


def _from_sums(counts: np.ndarray, scores: np.ndarray, refs: np.ndarray, names: list[str]) -> np.ndarray:
    """Headline from per-component condition counts and summed scores/references (last axis:
    components): each component's ratio of means calibrated, clipped below at COMPONENT_MIN, then
    their mean over the components defined somewhere (NaN when none is)."""
    best = np.array([METRICS[m].best for m in names])
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = np.maximum(calibrate(scores / counts, refs / counts, best), COMPONENT_MIN)
    parts = np.where(counts > 0, parts, np.nan)
    defined = np.isfinite(parts)
    total = np.where(defined, parts, 0.0).sum(axis=-1)
    n = defined.sum(axis=-1)
    return np.divide(total, n, out=np.full(np.shape(total), np.nan), where=n > 0)


def headline(frame: pd.DataFrame, reference: str = BASE) -> float:
    """The headline score of one per-condition frame (rows: test conditions) against `reference`
    (BASE: the mean baseline; FLOOR: "no change")."""
    names = headline_metrics(frame)
    if not names or frame.empty or not all(m + reference in frame for m in names):
        return float("nan")
    counts, scores, refs = _drug_sums(frame, names, reference)
    return float(_from_sums(counts.sum(axis=0), scores.sum(axis=0), refs.sum(axis=0), names))


def headline_vs_control(frame: pd.DataFrame) -> float:
    """The headline with "no change" (the real controls) as its 0."""
    return headline(frame, FLOOR)


def _resampled(frame: pd.DataFrame, names: list[str], draws: np.ndarray) -> np.ndarray:
    """Headline of each bootstrap draw of drugs (`draws`: (B, drugs) indices into the sorted drugs)."""
    counts, scores, refs = _drug_sums(frame, names, BASE)
    return _from_sums(counts[draws].sum(axis=1), scores[draws].sum(axis=1), refs[draws].sum(axis=1), names)


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
    fa = merged[keys + [f"{m}{s}_a" for m in names for s in ("", BASE)]].rename(columns=lambda c: c.removesuffix("_a"))
    fb = merged[keys + [f"{m}{s}_b" for m in names for s in ("", BASE)]].rename(columns=lambda c: c.removesuffix("_b"))
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
