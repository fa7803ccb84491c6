"""Aggregates of published boards, computed once per board or group of boards: per-predictor
summaries over seeds, the headline frame with its intervals, the ranking and its neighbour
comparisons, and the machine-readable results."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from bench.board import Board, across, is_reference
from bench.evaluation import calibrated
from bench.headline import CLUSTER, cluster_interval, headline, headline_metrics, headline_vs_control, paired_comparison
from bench.record import (
    BUDGET_FIELDS,
    EPOCH_KEY,
    HEADLINE_COLUMNS,
    OK,
    REPLICATE_NORM_SUFFIX,
    SELECTIONS,
    VAL_SELECTED,
    norm_column,
    replicate_column,
)
from bench.schema import DRUG


def summary_frame(board: Board, selection: str) -> pd.DataFrame:
    """One row per successful predictor (registry order): mean and sd over seeds of every metric,
    the selected epoch, seconds per epoch and of the fit, gradient steps and trained weights."""
    rows = []
    ok = board.ok()
    for name in board.predictors:
        runs = sorted((r for r in ok if r["predictor"] == name), key=lambda r: r["seed"])
        if not runs:
            continue
        row = {"predictor": name, "seeds": len(runs), "reference": is_reference(runs[0])}
        for key, values in [(m, [(r.get(selection) or {}).get(m) for r in runs]) for m in board.metrics] + [
            ("sec_per_epoch", [r.get("seconds_per_epoch") for r in runs]), ("fit_seconds", [r.get("fit_seconds") for r in runs]),
        ]:
            vals = np.array([v for v in values if v is not None and not pd.isna(v)], dtype=float)
            row[key] = vals.mean() if vals.size else np.nan
            row[f"{key}_sd"] = vals.std(ddof=1) if vals.size > 1 else np.nan
        epochs = [str(int(r[EPOCH_KEY[selection]])) for r in runs if r.get(EPOCH_KEY[selection]) is not None]
        row["epoch"] = ", ".join(epochs) or "-"  # one per seed: a mean epoch would hide disagreement
        row.update({key: count([r.get(key) for r in runs]) for key in BUDGET_FIELDS})
        rows.append(row)
    return pd.DataFrame(rows)


def count(values: list) -> str:
    """A count over seeds for people: its mean rounded, with thousands separators; '-' when none was recorded."""
    known = [v for v in values if v is not None]
    return f"{round(float(np.mean(known))):,}" if known else "-"


def predictor_order(boards: list[Board]) -> list[str]:
    return list(dict.fromkeys(n for b in boards for n in b.predictors))


def headline_frame(boards: Board | list[Board]) -> pd.DataFrame:
    """Every predictor (references included) with its headline over seeds (validation-selected
    epoch; pooled over folds and split seeds when given several boards), its 95% interval from a
    bootstrap over clusters of related drugs and then each run's model seeds, the drugs and clusters
    it rests on and its calibrated components, best first; plus a `replicate` row: half of the true
    cells predicting the other half. Computed once per group of boards."""
    return _headlines(tuple([boards] if isinstance(boards, Board) else boards)).copy()


ACTIVITY = "activity_auroc"  # shown beside the headline: telling active from inert conditions
VS_CONTROL, ACTIVITY_COLUMN = "vs no change", "activity AUROC"


def beside(frame: pd.DataFrame) -> dict[str, float]:
    """The columns shown beside the headline: the headline with "no change" as its 0, and the
    `activity_auroc` (0.5 = chance; the mean of its per-condition shares, NaN where absent)."""
    activity = float(frame[ACTIVITY].mean()) if ACTIVITY in frame else np.nan
    return {VS_CONTROL: headline_vs_control(frame), ACTIVITY_COLUMN: activity}


@lru_cache(maxsize=64)
def _headlines(group: tuple[Board, ...]) -> pd.DataFrame:
    boards = list(group)
    rows, replicate = [], None
    for name in predictor_order(boards):
        frame = across(boards, name)
        if frame.empty or not headline_metrics(frame):
            continue
        low, high = cluster_interval(across(boards, name, by_seed=True))
        runs = [r for b in boards for r in b.ok() if r["predictor"] == name]
        row = {"predictor": name, "reference": is_reference(runs[0]), "headline": headline(frame), "low": low, "high": high,
               "drugs": frame[DRUG].nunique(), "clusters": frame[CLUSTER].nunique(), "seeds": len({r["seed"] for r in runs})}
        row.update({norm_column(m): calibrated(frame, m) for m in headline_metrics(frame)})
        row.update(beside(frame))
        rows.append(row)
        if replicate is None and all(replicate_column(m) in frame for m in headline_metrics(frame)):
            ref = frame.assign(**{m: frame[replicate_column(m)] for m in [*headline_metrics(frame), ACTIVITY] if replicate_column(m) in frame})
            replicate = {"predictor": "replicate", "reference": True, "headline": headline(ref), "low": np.nan, "high": np.nan,
                         "drugs": 0, "clusters": 0, "seeds": 0, **{norm_column(m): calibrated(ref, m) for m in headline_metrics(ref)},
                         **beside(ref)}
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("headline", ascending=False, kind="stable")
    return pd.concat([frame, pd.DataFrame([replicate])], ignore_index=True) if replicate else frame.reset_index(drop=True)


def ranking(boards: Board | list[Board]) -> pd.DataFrame:
    """Non-reference predictors ranked by the headline (validation-selected epoch, pooled over seeds)."""
    frame = headline_frame(boards)
    return frame if frame.empty else frame[~frame["reference"]].reset_index(drop=True)


def neighbour_pairs(boards: Board | list[Board]) -> list[dict]:
    """The ranking's adjacent pairs (best first) with their paired comparison (bootstrap over
    clusters of related drugs, then each predictor's model seeds)."""
    return list(_pairs(tuple([boards] if isinstance(boards, Board) else boards)))


@lru_cache(maxsize=64)
def _pairs(group: tuple[Board, ...]) -> tuple[dict, ...]:
    boards = list(group)
    ranked = ranking(boards)
    names = ranked["predictor"].tolist() if not ranked.empty else []
    frames = {n: across(boards, n, by_seed=True) for n in names}
    return tuple({"above": a, "below": b, **paired_comparison(frames[a], frames[b])} for a, b in zip(names, names[1:]))


def replicate_row(board: Board, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with a reference row of the replicate scores (calibrated columns only)."""
    refs = {}
    for col in board.reference_columns:
        written = [(r.get(VAL_SELECTED) or {}).get(col) for r in board.ok()]
        vals = [v for v in written if v is not None and not pd.isna(v)]
        if vals:
            refs[norm_column(col.removesuffix(REPLICATE_NORM_SUFFIX))] = float(np.mean(vals))
    if not refs or frame.empty:
        return frame
    return pd.concat([frame, pd.DataFrame([{"predictor": "replicate", "reference": True, **refs}])], ignore_index=True)


def split_groups(boards: dict[str, Board]) -> dict[str, list[Board]]:
    """Boards grouped by their split's registered name (one per split seed and fold)."""
    groups: dict[str, list[Board]] = {}
    for board in boards.values():
        groups.setdefault(board.base, []).append(board)
    return {base: sorted(group, key=lambda b: (b.split_seed, -1 if b.fold is None else b.fold)) for base, group in groups.items()}


def results_frame(boards: dict[str, Board]) -> pd.DataFrame:
    """Every run, machine-readable: one row per split x predictor x seed x selection (failures: one row)."""
    rows = []
    for split, board in boards.items():
        metrics, order = [*HEADLINE_COLUMNS, *board.metrics, *board.reference_columns], board.predictors
        for r in sorted(board.results, key=lambda r: (order.index(r["predictor"]), r["seed"])):
            base = {
                "split": split, "predictor": r["predictor"], "seed": r["seed"], "status": r["status"],
                "error": r.get("error"), "reference": is_reference(r), "trainable": bool(r.get("trainable")),
                "seconds_per_epoch": r.get("seconds_per_epoch"), "fit_seconds": r.get("fit_seconds"),
            }
            if r["status"] != OK:
                rows.append({**base, "selection": None})
                continue
            for sel in SELECTIONS:
                rows.append({**base, "selection": sel, "epoch": r.get(EPOCH_KEY[sel]),
                             **{m: (r.get(sel) or {}).get(m) for m in metrics}})
    return pd.DataFrame(rows)
