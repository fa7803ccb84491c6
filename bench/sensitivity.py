"""What decides the headline ranking: the ranking of the non-reference predictors under each
headline component alone, under the headline without each component and under alternative metrics
alone, each compared with the headline's by Kendall tau (the sensitivity panel); and the headline
recomputed on strata of the test conditions (cell line, dose, active or inert). Rendered on every
split page and pooled page (bench/pages.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

from bench.aggregate import ranking
from bench.board import Board, across
from bench.headline import headline, headline_metrics
from bench.record import ACTIVE
from metrics import METRICS
from metrics.calibration import BASE, calibrated

HEADLINE = "headline"
ALTERNATIVES = ("mse_delta", "pearson_edistance")  # metrics a reader might rank by instead, shown alone when present
TOP = 3  # predictors named per variant
ACTIVITY = "activity"  # stratum column: "active" or "inert", from ACTIVE

PANEL_NOTE = (
    "Each row ranks the non-reference predictors by one variant of the score: a headline component alone "
    "(its calibrated ratio of means, 0 = the mean baseline), the headline without one component (the mean "
    "of the others) or an alternative metric alone. Kendall tau compares that order with the headline's "
    "(1 = the same order, 0 = unrelated, -1 = reversed): a component whose removal leaves tau near 1 does "
    "not decide the ranking, and one whose row alone reaches tau near 1 carries it."
)

STRATA_NOTE = (
    "The headline recomputed on a subset of the test conditions (each component a ratio of means over "
    "the subset, counted at no less than -1); the number in brackets counts the stratum's test "
    "conditions; **bold**: best in the column. Descriptive: no interval."
)


def _usable(frames: dict[str, pd.DataFrame], metric: str) -> bool:
    """Whether every frame holds `metric` and its mean-baseline score."""
    return metric in METRICS and all(metric in f and metric + BASE in f for f in frames.values())


def _without(frame: pd.DataFrame, metric: str) -> float:
    """The headline of `frame` without the component `metric` (the mean of the others)."""
    return headline(frame.drop(columns=[metric]))


def variant_scores(frames: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Per variant (the headline, each component alone, the headline without each component, each
    alternative metric alone), predictor -> score on its per-condition frame."""
    components = [m for m in headline_metrics() if _usable(frames, m)]
    variants: dict[str, Callable[[pd.DataFrame], float]] = {HEADLINE: headline}
    variants |= {f"{m} only": partial(calibrated, metric=m) for m in components}
    variants |= {f"without {m}": partial(_without, metric=m) for m in components}
    variants |= {f"{m} only": partial(calibrated, metric=m) for m in ALTERNATIVES if _usable(frames, m)}
    return {v: pd.Series({n: score(f) for n, f in frames.items()}, dtype=float) for v, score in variants.items()}


def tau_to_headline(scores: dict[str, pd.Series]) -> dict[str, float]:
    """Per variant, Kendall tau between its scores and the headline's over the predictors both
    define (NaN with fewer than two, or when either is constant there)."""
    head = scores[HEADLINE].dropna()
    taus = {}
    for variant, values in scores.items():
        shared = head.index.intersection(values.dropna().index)
        a, b = head[shared], values[shared]
        taus[variant] = float(stats.kendalltau(a, b).statistic) if len(shared) > 1 and a.nunique() > 1 and b.nunique() > 1 else np.nan
    return taus


def strata(frames: dict[str, pd.DataFrame], column: str) -> pd.DataFrame:
    """Predictors (rows) x values of `column` (sorted): the headline of each predictor's conditions
    with that value."""
    values = sorted(set().union(*(f[column].dropna().unique() for f in frames.values())))
    return pd.DataFrame({v: {n: headline(f[f[column] == v]) for n, f in frames.items()} for v in values}, dtype=float)


def with_activity(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with ACTIVITY: "active" where the truth has a significant DE gene, else "inert"."""
    return frame.assign(**{ACTIVITY: np.where(frame[ACTIVE].astype(float) > 0.5, "active", "inert")})


def inert_components(frames: dict[str, pd.DataFrame]) -> list[str]:
    """The headline components defined on some inert condition: what the inert stratum rests on."""
    inert = [f[f[ACTIVITY] == "inert"] for f in frames.values()]
    return [m for m in headline_metrics() if any(m in f and (f[m].notna() & f[m + BASE].notna()).any() for f in inert)]


def _fmt(value: float, digits: int = 3) -> str:
    """A score as text: "-" when undefined, never "-0.000"."""
    if pd.isna(value):
        return "-"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _label(value) -> str:
    """A stratum's value as a column heading: numbers without trailing zeros (a dose of 10.0: "10")."""
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


def panel_table(scores: dict[str, pd.Series]) -> str:
    """Markdown: one row per variant, its tau to the headline and its top predictors with scores."""
    taus = tau_to_headline(scores)
    head = ["variant", "tau to headline", *(f"#{i + 1}" for i in range(TOP))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, values in scores.items():
        top = values.dropna().sort_values(ascending=False, kind="stable").head(TOP)
        cells = [f"{name} {_fmt(score)}" for name, score in top.items()] + ["-"] * (TOP - len(top))
        lines.append(f"| {variant} | {_fmt(taus[variant], 2)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strata_table(table: pd.DataFrame, counts: dict, label: str) -> str:
    """Markdown: predictors as rows, strata as columns headed `label` and the stratum's condition
    count; the best value of each column in bold."""
    head = ["predictor", *(f"{label}{_label(v)} ({counts[v]})" for v in table)]
    best = {v: _fmt(table[v].max()) for v in table}
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.iterrows():
        cells = [f"**{_fmt(x)}**" if _fmt(x) == best[v] != "-" else _fmt(x) for v, x in row.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _counts(frames: dict[str, pd.DataFrame], column: str) -> dict:
    """Test conditions per value of `column`, over every predictor's frame."""
    columns = list(dict.fromkeys(["cell_type", "drug", "dose", column]))
    keys = pd.concat([f[columns] for f in frames.values()]).drop_duplicates()
    return keys[column].value_counts().to_dict()


def sensitivity_lines(boards: list[Board], heading: str = "##") -> list[str]:
    """The page section: the sensitivity panel and the strata tables of the non-reference
    predictors (headline order) on `boards` pooled; none with fewer than two predictors."""
    ranked = ranking(boards)
    if len(ranked) < 2:
        return []
    frames = {n: across(boards, n) for n in ranked["predictor"]}
    lines = [f"{heading} What decides the ranking", "", "**Sensitivity panel.** " + PANEL_NOTE, "",
             panel_table(variant_scores(frames)), "", "**Strata.** " + STRATA_NOTE, ""]
    groups = [("By cell line", "cell_type", ""), ("By dose", "dose", "dose ")]
    if all(ACTIVE in f for f in frames.values()):
        frames = {n: with_activity(f) for n, f in frames.items()}
        rests = ", ".join(f"`{m}`" for m in inert_components(frames)) or "none"
        groups.append((f"Active vs inert (inert: no significant true DE gene, where the DE-set components are "
                       f"undefined; its headline rests on the components defined there: {rests})", ACTIVITY, ""))
    for title, column, label in groups:
        lines += [f"{title}:", "", strata_table(strata(frames, column), _counts(frames, column), label), ""]
    return lines
