"""Reproducing a published leaderboard: re-run chosen predictors with the published commands (same
data, split and seeds) into a fresh folder and compare their numbers with `results.csv`. The command
lines are run by a callable the caller hands in (`bench leaderboard --check` hands the CLI's `main`),
so this module sits below the CLI in the layers (pyproject.toml).

Tolerances (absolute, per metric value): predictors that do not train are plain numpy and repeat to
floating-point summation order, so CHEAP_TOLERANCE; trainable ones repeat exactly on one machine with
one thread count, but torch's CPU kernels sum in a thread-dependent order and the difference grows
over epochs, so TRAINABLE_TOLERANCE.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.publish import MANIFEST, RESULTS, SELECTIONS, load_boards, results_frame
from bench.record import OK

CHEAP_TOLERANCE = 1e-6
TRAINABLE_TOLERANCE = 0.05
KEYS = ["split", "predictor", "seed", "selection"]
NOT_METRICS = {"status", "error", "reference", "trainable", "seconds_per_epoch", "fit_seconds", "epoch", *KEYS}

RunCommand = Callable[[list[str]], int]  # runs `bench ARGV...` (ARGV without "bench"); its exit status


@dataclass
class Outcome:
    """What a re-run found: one line per published number that did not reproduce, and how many
    published numbers were compared."""

    problems: list[str] = field(default_factory=list)
    compared: int = 0

    def add(self, other: Outcome) -> None:
        """Count `other`'s comparisons and problems in with these."""
        self.problems += other.problems
        self.compared += other.compared


def read_published(folder: Path) -> tuple[pd.DataFrame, dict]:
    """The published results.csv and manifest of a leaderboard folder."""
    folder = Path(folder)
    for name in (RESULTS, MANIFEST):
        if not (folder / name).exists():
            raise BenchError(f"{folder / name}: not found (publish with `bench leaderboard RUN_DIR --out {folder}`)")
    return pd.read_csv(folder / RESULTS, float_precision="round_trip"), json.loads((folder / MANIFEST).read_text())


def rerun(manifest: dict, split: str, predictors: list[str], seeds: list[int], out: Path, run_command: RunCommand) -> list[Path]:
    """Re-run `predictors` x `seeds` of `split` with the published commands, one run folder per command:
    each command with those predictors and seeds, the board's own hold-out (split seed, fold) and
    fresh --out and --cache-dir folders appended (argparse keeps an option's last value)."""
    folders = []
    for i, meta in enumerate(manifest["splits"][split]):
        argv = shlex.split(meta["command"])[1:]
        chosen = [p for p in predictors if p in meta.get("predictors", [])]
        if argv[:1] != ["run"] or not chosen:
            continue
        summary = meta.get("split_summary") or {}
        fold, target = summary.get("fold"), Path(out) / f"{split}-{i}"
        argv += ["--predictors", ",".join(chosen), "--seeds", ",".join(map(str, seeds)), "--out", str(target),
                 "--cache-dir", str(Path(out) / "cache")]
        if "seed" in summary:
            argv += ["--split-seeds", str(summary["seed"])]
        if fold is not None:
            argv += ["--fold", str(fold)]
        status = run_command(argv)
        if status != 0:
            raise BenchError(f"re-running `bench {shlex.join(argv)}` failed (exit status {status})")
        folders.append(target if fold is None else target / f"fold{fold}")
    return folders


def compare(published: pd.DataFrame, fresh: pd.DataFrame, tolerance: dict[str, float]) -> Outcome:
    """The published metric values of the re-run (predictor, seed)s against the fresh run's: one line
    per value not matched within `tolerance[predictor]` (or row missing), and the values compared."""
    metrics = [c for c in published.columns if c not in NOT_METRICS]
    fresh = fresh.set_index(KEYS)
    outcome = Outcome()
    for row in published[published["selection"].isin(SELECTIONS)].itertuples(index=False):
        key = tuple(getattr(row, k) for k in KEYS)
        if row.predictor not in tolerance:
            continue
        if key not in fresh.index:
            outcome.problems.append(f"{' '.join(map(str, key))}: not in the fresh run")
            continue
        again = fresh.loc[key]
        outcome.compared += len(metrics)
        for m in metrics:
            old = getattr(row, m)
            new = again.get(m, np.nan)
            if pd.isna(old) and pd.isna(new):
                continue
            if pd.isna(old) or pd.isna(new) or abs(old - new) > tolerance[row.predictor]:
                outcome.problems.append(f"{' '.join(map(str, key))} {m}: published {old!r}, fresh {new!r} "
                                        f"(tolerance {tolerance[row.predictor]:g})")
    return outcome


def check_published(folder: Path, work: Path, run_command: RunCommand, trainable: bool = False,
                    first_seed_only: bool = False) -> Outcome:
    """Re-run the published predictors (those that do not train; with `trainable`, every one) into
    `work` and compare their numbers; no problems means the published numbers reproduce."""
    published, manifest = read_published(folder)
    ok = published[published["status"] == OK]
    outcome = Outcome()
    for split, rows in ok.groupby("split", sort=False):
        chosen = list(dict.fromkeys(rows["predictor"] if trainable else rows.loc[~rows["trainable"], "predictor"]))
        seeds = sorted(rows.loc[rows["predictor"].isin(chosen), "seed"].unique().tolist())
        if first_seed_only:
            seeds = seeds[:1]
        if not chosen or not seeds:
            continue
        fresh = results_frame(load_boards(rerun(manifest, split, chosen, seeds, work, run_command))).assign(split=split)
        kinds = dict(zip(rows["predictor"], rows["trainable"]))
        tolerance = {p: TRAINABLE_TOLERANCE if kinds[p] else CHEAP_TOLERANCE for p in chosen}
        outcome.add(compare(rows[rows["predictor"].isin(chosen) & rows["seed"].isin(seeds)], fresh, tolerance))
    return outcome
