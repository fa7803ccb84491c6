"""How far a headline ranking can be trusted: its agreement across model seeds, folds and split seeds
(Kendall tau), which neighbours in it are separated by their paired interval, what those intervals
resample, and the verdict lines of a page."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from bench.aggregate import ACTIVITY_COLUMN, VS_CONTROL, neighbour_pairs, ranking
from bench.board import Board, across, pooled_conditions
from bench.headline import BOOTSTRAP, headline, interval_text
from bench.record import NORM_SUFFIX

CLUSTER_KINDS = {"scaffold": "Bemis-Murcko scaffolds", "family": "drug families (obs `drug_family`)"}


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


def separated(pair: dict) -> bool:
    """Whether a pair's 95% interval excludes 0 (equivalently, its bootstrap p < 0.05)."""
    return bool(pair["low"] > 0 or pair["high"] < 0)


def verdict(pairs: list[dict]) -> str:
    """The ranking written with `>` where the 95% paired interval separates neighbours and `≈` where
    it does not: what the intervals support, and nothing more."""
    if not pairs:
        return ""
    return pairs[0]["above"] + "".join((" > " if separated(p) else " ≈ ") + p["below"] for p in pairs)


def detectable(pairs: list[dict]) -> tuple[float, int]:
    """The detectable headline difference of a page's compared pair (the ranking's top two: 80% power,
    5% level, from that pair's own bootstrap standard error) and the clusters it rests on."""
    return (pairs[0]["detectable"], pairs[0]["clusters"]) if pairs else (float("nan"), 0)


def within_board_seed_tau(boards: list[Board], names: list[str]) -> tuple[float, int]:
    """Mean Kendall tau between the rankings of two model seeds on the same board (the same drugs,
    another training seed), over every board's pairs of seeds."""
    total, count = 0.0, 0
    for board in boards:
        seeds = sorted({r["seed"] for r in board.ok()})
        tau, pairs = mean_kendall_tau([headline_scores({n: pooled_conditions(board, n, seed=s) for n in names}) for s in seeds])
        total, count = total + (tau * pairs if pairs else 0.0), count + pairs
    return (total / count if count else float("nan")), count


def stability_lines(boards: list[Board], pairs: list[dict] | None = None) -> list[str]:
    """Kendall tau of the headline ranking (non-reference predictors) across model seeds (folds pooled,
    and within each fold), across folds or split seeds; then the ranking written with the separations
    its paired intervals support."""
    ranked = ranking(boards)
    if len(ranked) < 2:
        return []
    names = ranked["predictor"].tolist()
    model_seeds = sorted({r["seed"] for b in boards for r in b.ok()})
    tau, n_pairs = mean_kendall_tau([headline_scores({n: across(boards, n, s) for n in names}) for s in model_seeds])
    pooled = ", every fold pooled" if len(boards) > 1 else ""
    lines = [f"- Across model seeds ({', '.join(map(str, model_seeds))}{pooled}): mean Kendall tau "
             + (f"{tau:.2f} over {n_pairs} pair(s) of seeds." if n_pairs else
                "not available (one seed): seed-to-seed variation is neither measured here nor inside the intervals.")]
    if len(boards) > 1:
        tau, n_pairs = within_board_seed_tau(boards, names)
        folds = any(b.fold is not None for b in boards)
        if n_pairs:
            lines.append(f"- Across model seeds within each of the {len(boards)} {'folds' if folds else 'hold-outs'} (the same "
                         f"drugs, another training seed): mean Kendall tau {tau:.2f} over {n_pairs} pair(s).")
        tau, n_pairs = mean_kendall_tau([headline_scores({n: pooled_conditions(b, n) for n in names}) for b in boards])
        what = (f"the {len(boards)} folds ({', '.join(b.label for b in boards)}; each tests other drugs)"
                if folds else f"split seeds ({', '.join(str(b.split_seed) for b in boards)})")
        lines.append(f"- Across {what}: mean Kendall tau {tau:.2f} over {n_pairs} pair(s).")
    pairs = neighbour_pairs(boards) if pairs is None else pairs
    lines.append(f"- Supported by 95% paired intervals over clusters and seeds (`>` separated, `≈` not): {verdict(pairs)}")
    return lines


def cluster_source(boards: list[Board]) -> str:
    """How the drugs of `boards` were clustered, as recorded in their run folders."""
    recorded = [b.clusters for b in boards if b.clusters is not None]
    kinds = {c.partition(":")[0] for clusters in recorded for c in clusters.values()}
    named = [CLUSTER_KINDS[k] for k in sorted(kinds) if k in CLUSTER_KINDS]
    if not recorded:
        return "one cluster per drug: these run folders record no drug clusters (written before `bench run` recorded them)"
    text = ("; ".join(named) + (", a drug without one its own cluster" if "drug" in kinds else "") if named else
            "one cluster per drug: the data name no drug families and have no SMILES")
    missing = len(boards) - len(recorded)
    return text + (f"; {missing} of {len(boards)} run folders record none: their drugs one cluster each" if missing else "")


def resampling_lines(boards: list[Board]) -> list[str]:
    """What the page's intervals and tests rest on: the clusters of related drugs (how many, how they
    were formed) and the model seeds, and the test used."""
    ranked = ranking(boards)
    if ranked.empty:
        return []
    top = ranked.iloc[0]
    per_run = sorted({len({r["seed"] for r in b.ok() if r["predictor"] == top["predictor"]}) for b in boards})
    seeds = ("one model seed per run: seed-to-seed variation is not inside the intervals" if per_run == [1] else
             f"then {'/'.join(map(str, per_run))} model seeds per run drawn with replacement within each run")
    return [f"Intervals and tests rest on {top['clusters']} cluster(s) of related drugs ({cluster_source(boards)}; "
            f"{top['drugs']} held-out drugs). A bootstrap ({BOOTSTRAP:,} draws) draws the clusters with replacement, {seeds}; "
            "its standard deviation (times sqrt(G/(G-1)), G clusters) is the standard error of a headline, and of a pair's "
            "difference when the pair is drawn on the same clusters (paired). Each 95% interval is the estimate -+ t_0.975 "
            "x that standard error, t with G - 1 degrees of freedom, and a pair's test is the t test of that same "
            "difference on the same standard error (two-sided), so p < 0.05 exactly when its interval excludes 0."]


def significance_lines(boards: Board | list[Board], pairs: list[dict] | None = None) -> list[str]:
    """The top non-reference predictor against the next on the headline: the difference, its 95% paired
    interval and p (one estimand, one standard error), the verdict, and the difference this pair can detect."""
    pairs = neighbour_pairs(boards) if pairs is None else pairs
    if not pairs:
        return []
    cmp = pairs[0]
    a, b, n = cmp["above"], cmp["below"], cmp["clusters"]
    where = f"{a} vs {b} over {cmp['drugs']} held-out drugs in {n} cluster(s): headline difference {cmp['difference']:+.3f}"
    if np.isnan(cmp["low"]):
        return [f"{where}; interval and test n/a (one {'drug' if cmp['drugs'] == 1 else 'cluster'})."]
    p = "< 0.001" if cmp["p"] < 0.001 else f"= {cmp['p']:.3g}"
    how = "(t_0.975 + t_0.8) x the same standard error"
    if separated(cmp):
        lead, other = (a, b) if cmp["difference"] > 0 else (b, a)
        said = (f"{lead} is ahead of {other} at the 95% level; the smallest difference this comparison detects with 80% "
                f"power at the 5% level is {cmp['detectable']:.3f} ({how})")
    else:
        said = (f"not separated at the 95% level; differences below {cmp['detectable']:.3f} cannot be seen here (80% power "
                f"at the 5% level: {how})")
    return [f"{where} (95% paired bootstrap interval {cmp['low']:+.3f} to {cmp['high']:+.3f}: the difference -+ t_0.975 at "
            f"{n - 1} df x its bootstrap standard error {cmp['se']:.3f}; t test of the same difference on that standard error, "
            f"two-sided p {p}). Verdict: {said}."]


def fmt(value: float, digits: int = 3) -> str:
    """A score to `digits` decimals; "-" for a missing one, never "-0.000"."""
    if pd.isna(value):
        return "-"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def headline_table(frame: pd.DataFrame) -> str:
    """Markdown: rank, predictor, headline with its bootstrap interval (clusters of related drugs,
    then model seeds), then the calibrated components and any per-split-seed headline columns."""
    if frame.empty:
        return "(no successful runs with the headline metrics)"
    parts = [c for c in frame.columns if c.endswith(NORM_SUFFIX) or c.startswith("split seed")]
    parts = [c for c in (VS_CONTROL, *parts, ACTIVITY_COLUMN) if c in frame]
    head = ["rank", "predictor", "headline", "95% interval (clusters, seeds)", *parts, "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rank = 0
    for _, row in frame.iterrows():
        rank += not row["reference"]
        label = f"{row['predictor']} (reference)" if row["reference"] else row["predictor"]
        spread = interval_text(row["low"], row["high"], row["drugs"]) if row["clusters"] else "-"
        values = [fmt(row[c]) for c in parts]
        lines.append(f"| {'-' if row['reference'] else rank} | {label} | {fmt(row['headline'])} | {spread} | "
                     + " | ".join(values) + f" | {row['seeds'] or '-'} |")
    return "\n".join(lines)


def data_set_lines(groups: dict[str, list[Board]]) -> list[str]:
    """Kendall tau of the headline ranking between data sets (e.g. generator presets) run on the
    same split: does the verdict survive a change of data?"""
    by_split: dict[str, list[pd.Series]] = {}
    for group in groups.values():
        names = ranking(group)["predictor"].tolist() if not ranking(group).empty else []
        split = group[0].meta.get("split", group[0].base)
        by_split.setdefault(split, []).append(headline_scores({n: across(group, n) for n in names}))
    lines = []
    for split, rankings in by_split.items():
        if len(rankings) > 1:
            tau, pairs = mean_kendall_tau(rankings)
            lines += [f"## Across data sets: `{split}`", "",
                      f"Mean Kendall tau of the headline ranking between the {len(rankings)} data sets: {tau:.2f} "
                      f"({pairs} pair(s); predictors each data set ranks).", ""]
    return lines
