"""Reproducing a published leaderboard: re-run chosen predictors with the published commands (same
data, split and seeds) into a fresh folder and compare their numbers with `results.csv`. It re-runs
command lines through the CLI's parser, so it sits above the CLI in the layers (pyproject.toml).

Tolerances (absolute, per metric value): predictors that do not train are plain numpy and repeat to
floating-point summation order, so CHEAP_TOLERANCE; trainable ones repeat exactly on one machine with
one thread count, but torch's CPU kernels sum in a thread-dependent order and the difference grows
over epochs, so TRAINABLE_TOLERANCE.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.publish import MANIFEST, RESULTS, SELECTIONS, load_boards, results_frame

CHEAP_TOLERANCE = 1e-6
TRAINABLE_TOLERANCE = 0.05
KEYS = ["split", "predictor", "seed", "selection"]
NOT_METRICS = {"status", "error", "reference", "trainable", "seconds_per_epoch", "fit_seconds", "epoch", *KEYS}


def read_published(folder: Path) -> tuple[pd.DataFrame, dict]:
    """The published results.csv and manifest of a leaderboard folder."""
    folder = Path(folder)
    for name in (RESULTS, MANIFEST):
        if not (folder / name).exists():
            raise BenchError(f"{folder / name}: not found (publish with `bench leaderboard RUN_DIR --out {folder}`)")
    return pd.read_csv(folder / RESULTS, float_precision="round_trip"), json.loads((folder / MANIFEST).read_text())


def rerun(manifest: dict, split: str, predictors: list[str], seeds: list[int], out: Path) -> list[Path]:
    """Re-run `predictors` x `seeds` of `split` with the published commands, one run folder per command."""
    from bench.cli import build_parser

    folders = []
    for i, meta in enumerate(manifest["splits"][split]):
        argv = shlex.split(meta["command"])[1:]
        args = build_parser().parse_args(argv)
        chosen = [p for p in predictors if p in meta.get("predictors", [])]
        if args.command != "run" or not chosen:
            continue
        args.predictors, args.seeds = ",".join(chosen), ",".join(map(str, seeds))
        summary = meta.get("split_summary") or {}
        args.split_seeds = str(summary.get("seed", args.split_seeds))  # this board's hold-out
        args.fold = summary.get("fold")
        args.out, args.cache_dir = Path(out) / f"{split}-{i}", Path(out) / "cache"
        args.argv = argv
        args.func(args)
        folders.append(args.out if args.fold is None else args.out / f"fold{args.fold}")
    return folders


def compare(published: pd.DataFrame, fresh: pd.DataFrame, tolerance: dict[str, float]) -> list[str]:
    """One line per published metric value of a re-run (predictor, seed) that the fresh run does not
    match within `tolerance[predictor]`."""
    metrics = [c for c in published.columns if c not in NOT_METRICS]
    fresh = fresh.set_index(KEYS)
    problems = []
    for row in published[published["selection"].isin(SELECTIONS)].itertuples(index=False):
        key = tuple(getattr(row, k) for k in KEYS)
        if row.predictor not in tolerance:
            continue
        if key not in fresh.index:
            problems.append(f"{' '.join(map(str, key))}: not in the fresh run")
            continue
        again = fresh.loc[key]
        for m in metrics:
            old = getattr(row, m)
            new = again.get(m, np.nan)
            if pd.isna(old) and pd.isna(new):
                continue
            if pd.isna(old) or pd.isna(new) or abs(old - new) > tolerance[row.predictor]:
                problems.append(f"{' '.join(map(str, key))} {m}: published {old!r}, fresh {new!r} (tolerance {tolerance[row.predictor]:g})")
    return problems


def check_published(folder: Path, work: Path, predictors: list[str] | None = None, first_seed_only: bool = False) -> list[str]:
    """Re-run the published predictors (`predictors` or, when None, every one that does not train)
    and return the mismatches; an empty list means the published numbers reproduce."""
    published, manifest = read_published(folder)
    ok = published[published["status"] == "ok"]
    problems = []
    for split, rows in ok.groupby("split", sort=False):
        chosen = predictors if predictors is not None else list(dict.fromkeys(rows.loc[~rows["trainable"], "predictor"]))
        chosen = [p for p in chosen if p in set(rows["predictor"])]
        seeds = sorted(rows.loc[rows["predictor"].isin(chosen), "seed"].unique().tolist())
        if first_seed_only:
            seeds = seeds[:1]
        if not chosen or not seeds:
            continue
        fresh = results_frame(load_boards(rerun(manifest, split, chosen, seeds, work))).assign(split=split)
        trainable = dict(zip(rows["predictor"], rows["trainable"]))
        tolerance = {p: TRAINABLE_TOLERANCE if trainable[p] else CHEAP_TOLERANCE for p in chosen}
        expected = rows[rows["predictor"].isin(chosen) & rows["seed"].isin(seeds)]
        problems += compare(expected, fresh, tolerance)
    return problems
