"""The headline score: one calibrated number per predictor, 0 = the mean baseline (`train_mean`: the
training drugs' mean change per cell type and dose), 1 = perfect, with 95% intervals from a bootstrap
over clusters of related held-out drugs (neither a drug's conditions nor sibling drugs are
independent), then each run's model seeds; a paired comparison tests the difference its interval
shows. The same score against "no change" (the real controls as the prediction) is kept beside it.

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


CLUSTER, RUN, SEED = "cluster", "run", "seed"  # optional per-condition columns the bootstrap reads (bench/board.py)
KEYS = ["cell_type", DRUG, "dose"]


def clusters_of(frame: pd.DataFrame) -> pd.Series:
    """Each row's cluster of related drugs: the `cluster` column, else the drug itself."""
    return (frame[CLUSTER] if CLUSTER in frame else frame[DRUG]).astype(str)


def _units(frame: pd.DataFrame, names: list[str], clusters: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """What the bootstrap draws from a per-condition frame: per cluster, run and model seed, each
    component's number of defined conditions and summed scores and mean-baseline scores ((clusters,
    runs, seeds, 3k)), and which seeds each run holds ((runs, seeds) booleans)."""
    score = frame[names].to_numpy(dtype=float)
    ref = frame[[m + BASE for m in names]].to_numpy(dtype=float)
    defined = np.isfinite(score) & np.isfinite(ref)
    parts = np.hstack([defined, np.where(defined, score, 0.0), np.where(defined, ref, 0.0)])
    cluster = pd.Index(clusters).get_indexer(clusters_of(frame))
    run = frame[RUN].to_numpy(dtype=int) if RUN in frame else np.zeros(len(frame), dtype=int)
    seed, seeds = pd.factorize(frame[SEED]) if SEED in frame else (np.zeros(len(frame), dtype=int), [0])
    sums = np.zeros((len(clusters), run.max(initial=0) + 1, len(seeds), parts.shape[1]))
    np.add.at(sums, (cluster, run, seed), parts)
    present = np.zeros(sums.shape[1:3], dtype=bool)
    present[run, seed] = True
    return sums, present


def _seed_weights(present: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Weights ((draws, runs, seeds)) that average each run's model seeds: equal ones (rng None: the
    estimate, one draw), or per draw as many seeds drawn with replacement from each run's own."""
    held = present.sum(axis=1, keepdims=True)
    if rng is None:
        return (present / np.maximum(held, 1))[None]
    weights = np.zeros((BOOTSTRAP, *present.shape))
    rows = np.arange(BOOTSTRAP)
    for run, own in enumerate(present):
        seeds = np.flatnonzero(own)
        for pick in seeds[rng.integers(0, len(seeds), size=(len(seeds), BOOTSTRAP))] if len(seeds) else []:
            weights[rows, run, pick] += 1.0 / len(seeds)  # one pick per draw: rows never repeat
    return weights


def _cluster_weights(n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """How often each cluster is drawn ((draws, clusters)): clusters drawn with replacement."""
    draws = rng.integers(0, n_clusters, size=(BOOTSTRAP, n_clusters))
    offsets = n_clusters * np.arange(BOOTSTRAP)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=BOOTSTRAP * n_clusters).reshape(BOOTSTRAP, n_clusters)


def _weighted(sums: np.ndarray, names: list[str], clusters: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Headline of each draw: clusters weighted by `clusters` ((draws, C)), each run's seeds by `seeds`."""
    per_cluster = np.einsum("brs,crsq->bcq", seeds, sums)
    total = (clusters[:, :, None] * per_cluster).sum(axis=1)
    k = len(names)
    return _from_sums(total[:, :k], total[:, k : 2 * k], total[:, 2 * k :], names)


def _bootstrap(frame: pd.DataFrame, names: list[str], clusters: list[str], seed: int, stream: int) -> tuple[float, np.ndarray]:
    """The headline of `frame` (each run's seeds averaged) and its BOOTSTRAP draws: clusters drawn
    with replacement (seeded by `seed`, the same draws for every frame), then each run's model seeds
    (seeded by `seed` and `stream`, independent between predictors)."""
    sums, present = _units(frame, names, clusters)
    estimate = _weighted(sums, names, np.ones((1, len(clusters))), _seed_weights(present, None))[0]
    draws = _weighted(sums, names, _cluster_weights(len(clusters), np.random.default_rng(seed)),
                      _seed_weights(present, np.random.default_rng([seed, stream])))
    return float(estimate), draws


def _percentiles(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))


def _clusters(frame: pd.DataFrame, names: list[str]) -> list[str]:
    return sorted(clusters_of(frame).unique()) if names else []


def interval(frame: pd.DataFrame, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (LEVEL) of the headline over clusters of related drugs (the
    `cluster` column; else each drug its own) and the model seeds of each run (`run`, `seed`): a run
    record's own interval. NaN below two clusters."""
    names = headline_metrics(frame)
    clusters = _clusters(frame, names)
    if len(clusters) < 2:
        return float("nan"), float("nan")
    return _percentiles(_bootstrap(frame, names, clusters, seed, 1)[1])


def standard_error(draws: np.ndarray, clusters: int) -> float:
    """The standard error of an estimate from its bootstrap draws over `clusters` clusters: their
    standard deviation times sqrt(G / (G - 1)) (a bootstrap of G clusters sees (G - 1) / G of the variance)."""
    return float(draws.std(ddof=1) * np.sqrt(clusters / (clusters - 1)))


def t_interval(estimate: float, se: float, clusters: int, level: float = LEVEL) -> tuple[float, float]:
    """estimate -+ t_((1 + level) / 2) * se, t with clusters - 1 degrees of freedom."""
    half = stats.t.ppf(1 - (1 - level) / 2, clusters - 1) * se
    return float(estimate - half), float(estimate + half)


def t_p(estimate: float, se: float, clusters: int) -> float:
    """Two-sided p of "no difference" for estimate / se, t with clusters - 1 degrees of freedom: below
    1 - LEVEL exactly when `t_interval` excludes 0."""
    if not se > 0:
        return float("nan") if np.isnan(se) else 1.0 if estimate == 0 else 0.0
    return float(2 * stats.t.sf(abs(estimate) / se, clusters - 1))


def cluster_interval(frame: pd.DataFrame, seed: int = 0) -> tuple[float, float]:
    """The interval (LEVEL) a page shows for a headline: headline -+ t * its standard error from the
    bootstrap over clusters, then each run's seeds, t with clusters - 1 degrees of freedom (a
    percentile interval is too narrow with few clusters). NaN below two clusters."""
    names = headline_metrics(frame)
    clusters = _clusters(frame, names)
    if len(clusters) < 2:
        return float("nan"), float("nan")
    estimate, draws = _bootstrap(frame, names, clusters, seed, 1)
    return t_interval(estimate, standard_error(draws, len(clusters)), len(clusters))


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, seed: int = 0) -> dict:
    """Is `a` ahead of `b` on the headline? Over the test conditions both hold: the difference of
    their headlines, its standard error from a paired bootstrap (the same cluster draws for both, each
    predictor's seeds drawn on its own), the LEVEL interval and the two-sided p of that one difference
    (t with clusters - 1 degrees of freedom), and the difference the comparison detects."""
    names = [m for m in headline_metrics(a) if m in b and m + BASE in b]
    shared = a[KEYS].drop_duplicates().merge(b[KEYS].drop_duplicates(), on=KEYS)
    a, b = a.merge(shared, on=KEYS), b.merge(shared, on=KEYS)
    clusters = sorted(set(_clusters(a, names)) | set(_clusters(b, names)))
    out = {"drugs": int(shared[DRUG].nunique()), "clusters": len(clusters)}
    if len(clusters) < 2:
        nan = float("nan")
        return {**out, "difference": headline(a) - headline(b), "low": nan, "high": nan, "p": nan, "se": nan, "detectable": nan}
    head_a, boot_a = _bootstrap(a, names, clusters, seed, 1)
    head_b, boot_b = _bootstrap(b, names, clusters, seed, 2)
    difference, se = head_a - head_b, standard_error(boot_a - boot_b, len(clusters))
    low, high = t_interval(difference, se, len(clusters))
    return {**out, "difference": difference, "low": low, "high": high, "p": t_p(difference, se, len(clusters)), "se": se,
            "detectable": detectable_difference(se, len(clusters))}


def detectable_difference(se: float, clusters: int, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true headline difference a two-sided test at 1 - `level` over `clusters`
    independent clusters finds with probability `power`, when the estimated difference has standard
    error `se`: (t_(1-alpha/2) + t_power) * se, t with clusters - 1 degrees of freedom."""
    if clusters < 2 or not np.isfinite(se):
        return float("nan")
    df = clusters - 1
    return float((stats.t.ppf(1 - (1 - level) / 2, df) + stats.t.ppf(power, df)) * se)


def interval_text(low: float, high: float, drugs: int, digits: int = 3) -> str:
    """An interval as 'low to high', or why there is none: 'n/a (one drug)', 'n/a (one cluster)'."""
    if not (np.isnan(low) or np.isnan(high)):
        return f"{low:.{digits}f} to {high:.{digits}f}"
    return "n/a (one drug)" if drugs == 1 else "n/a (one cluster)"
