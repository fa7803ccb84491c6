"""Reproducing a published leaderboard: re-run chosen predictors with the published commands (same
data, split and seeds) into a fresh folder and compare their numbers with `results.csv`. The command
lines are run by a callable the caller hands in (`bench leaderboard --check` hands the CLI's `main`),
so this module sits below the CLI in the layers (pyproject.toml).

A published folder is untrusted input: only the `bench run` command lines bench itself writes are
re-run (options from RUN_OPTIONS; --out and --cache-dir replaced by folders inside the work folder;
Ray only with `allow_ray`), every command is checked before any runs, and what will run is printed first.

Tolerances (absolute, per metric value): predictors that do not train are plain numpy and repeat to
floating-point summation order, so CHEAP_TOLERANCE; trainable ones repeat exactly on one machine with
one thread count, but torch's CPU kernels sum in a thread-dependent order and the difference grows
over epochs, so TRAINABLE_TOLERANCE.
"""

from __future__ import annotations

import json
import shlex
import sys
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

# The options of `bench run` a published command may hold, and whether each takes a value.
RUN_OPTIONS = {
    "--predictors": True, "--split": True, "--split-column": True, "--split-seeds": True, "--split-seed": True,
    "--folds": True, "--fold": True, "--seeds": True, "--epochs": True, "--search": False, "--patience": True,
    "--set": True, "--workers": True, "--force": False, "--save-predictions": False, "--executor": True,
    "--data": True, "--preset": True, "--data-seed": True, "--sc": True, "--bulk": True, "--drug-key": True,
    "--cell-type-key": True, "--dose-key": True, "--dose-unit": True, "--control": True, "--normalize": True,
    "--smiles": True,
}
REPLACED = ("--out", "--cache-dir")  # dropped: the re-run writes into folders of its own inside the work folder
RAY_ADDRESS = "--ray-address"  # kept only with allow_ray, as `--executor ray` is


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
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (ValueError, OSError) as exc:
        raise BenchError(f"{folder / MANIFEST}: not a readable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise BenchError(f"{folder / MANIFEST}: no 'splits' object; not a manifest bench leaderboard writes")
    return pd.read_csv(folder / RESULTS, float_precision="round_trip"), manifest


def checked_argv(command: object, source: str, allow_ray: bool = False) -> list[str]:
    """The arguments (without 'bench') of a published `bench run` command line, its --out and
    --cache-dir dropped; a one-line error for any other command, an option bench run does not
    write, or Ray without `allow_ray`."""
    shown = repr(str(command)[:120])
    try:
        words = shlex.split(str(command))
    except ValueError:
        raise BenchError(f"{source}: command {shown} cannot be parsed; not re-run") from None
    if words[:2] != ["bench", "run"]:
        raise BenchError(f"{source}: command {shown} is not a `bench run` command; only those are re-run")
    argv, rest = ["run"], words[2:]
    while rest:
        name, eq, inline = rest.pop(0).partition("=")
        takes = RUN_OPTIONS.get(name, True)
        if name not in RUN_OPTIONS and name not in (*REPLACED, RAY_ADDRESS):
            raise BenchError(f"{source}: command {shown} holds {name!r}, not an option bench run writes; not re-run")
        if takes and not eq and not rest:
            raise BenchError(f"{source}: command {shown} gives {name} no value; not re-run")
        value = (inline if eq else rest.pop(0)) if takes else None
        if (name == RAY_ADDRESS or (name, value) == ("--executor", "ray")) and not allow_ray:
            raise BenchError(f"{source}: command {shown} runs on Ray ({name} {value}); pass --allow-ray to re-run it there")
        if name not in REPLACED:
            argv += [name] if value is None else [name, value]
    return argv


def plan(manifest: dict, split: str, predictors: list[str], seeds: list[int], out: Path, source: str,
         allow_ray: bool = False) -> list[tuple[list[str], Path]]:
    """The re-runs of `predictors` x `seeds` of `split`: each published command (checked by
    `checked_argv`) with those predictors and seeds, the board's own hold-out (split seed, fold) and
    fresh --out and --cache-dir folders in `out`, and the run folder it will write."""
    metas = manifest["splits"].get(split)
    if not isinstance(metas, list):
        raise BenchError(f"{source}: split '{split}' has no list of run folders in the manifest; not re-run")
    runs = []
    for i, meta in enumerate(metas):
        chosen = [p for p in predictors if p in meta.get("predictors", [])] if isinstance(meta, dict) else []
        if not chosen:
            continue
        argv = checked_argv(meta.get("command"), f"{source} (split {split!r})", allow_ray)
        seed, fold = _hold_out(meta.get("split_summary"), f"{source} (split {split!r})")
        target = Path(out) / f"run-{i}"
        argv += ["--predictors", ",".join(chosen), "--seeds", ",".join(map(str, seeds)), "--out", str(target),
                 "--cache-dir", str(Path(out) / "cache")]
        if seed is not None:
            argv += ["--split-seeds", str(seed)]
        if fold is not None:
            argv += ["--fold", str(fold)]
        runs.append((argv, target if fold is None else target / f"fold{fold}"))
    return runs


def _hold_out(summary: object, source: str) -> tuple[int | None, int | None]:
    """(split seed, fold) a run folder's split summary records, as whole numbers (None: not recorded)."""
    summary = summary or {}
    problem = BenchError(f"{source}: split_summary {str(summary)[:80]!r} has no whole-number split seed and fold; not re-run")
    if not isinstance(summary, dict):
        raise problem
    try:
        seed, fold = (None if summary.get(k) is None else int(summary[k]) for k in ("seed", "fold"))
    except (TypeError, ValueError):
        raise problem from None
    return seed, fold


def rerun(runs: list[tuple[list[str], Path]], run_command: RunCommand) -> list[Path]:
    """Run planned re-runs; the run folders they wrote."""
    for argv, _ in runs:
        status = run_command(argv)
        if status != 0:
            raise BenchError(f"re-running `bench {shlex.join(argv)}` failed (exit status {status})")
    return [folder for _, folder in runs]


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
                    first_seed_only: bool = False, allow_ray: bool = False) -> Outcome:
    """Re-run the published predictors (those that do not train; with `trainable`, every one) into
    `work` and compare their numbers; no problems means the published numbers reproduce. Every
    command is checked and printed (stderr) before the first one runs."""
    published, manifest = read_published(folder)
    ok = published[published["status"] == OK]
    planned = []
    for n, (split, rows) in enumerate(ok.groupby("split", sort=False)):
        chosen = list(dict.fromkeys(rows["predictor"] if trainable else rows.loc[~rows["trainable"], "predictor"]))
        seeds = sorted(rows.loc[rows["predictor"].isin(chosen), "seed"].unique().tolist())
        if first_seed_only:
            seeds = seeds[:1]
        if chosen and seeds:
            runs = plan(manifest, str(split), chosen, seeds, Path(work) / f"split-{n}", str(Path(folder) / MANIFEST), allow_ray)
            planned.append((split, rows, chosen, seeds, runs))
    for *_, runs in planned:
        for argv, _ in runs:
            print(f"will run: bench {shlex.join(argv)}", file=sys.stderr)
    outcome = Outcome()
    for split, rows, chosen, seeds, runs in planned:
        fresh = results_frame(load_boards(rerun(runs, run_command))).assign(split=split)
        kinds = dict(zip(rows["predictor"], rows["trainable"]))
        tolerance = {p: TRAINABLE_TOLERANCE if kinds[p] else CHEAP_TOLERANCE for p in chosen}
        outcome.add(compare(rows[rows["predictor"].isin(chosen) & rows["seed"].isin(seeds)], fresh, tolerance))
    return outcome
