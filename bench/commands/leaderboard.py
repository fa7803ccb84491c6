"""`bench leaderboard`: publish one or more run folders as the leaderboard folder (markdown, plots, results.csv),
or with --check re-run a published leaderboard's commands and compare the numbers (bench/reproduce.py)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import nullcontext, redirect_stdout
from pathlib import Path

from bench.cli import main
from bench.errors import BenchError
from bench.io import folder_lock, writable_dir
from bench.publish import write_leaderboard
from bench.reproduce import TRAINABLE_TOLERANCE, check_published

DEFAULT_RUN_DIR = Path("bench-results")
DEFAULT_BOARD = Path("leaderboard")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="publish run folders as the leaderboard: README.md, one page per split, plots; "
                                           "--check: re-run a published one and compare its numbers")
    p.add_argument("run_dirs", nargs="*", type=Path, default=[], metavar="RUN_DIR",
                   help=f"run folders written by `bench run` (default: ./{DEFAULT_RUN_DIR})")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default: ./{DEFAULT_BOARD})")
    p.add_argument("--table1", type=Path, action="append", default=[], metavar="CSV",
                   help="a `bench pretrain --out` table to publish as Table 1 (repeatable: one per data set)")
    p.add_argument("--check", type=Path, nargs="?", const=DEFAULT_BOARD, default=None, metavar="FOLDER",
                   help=f"re-run the published leaderboard in FOLDER (default: ./{DEFAULT_BOARD}) with its own commands, "
                        "for the predictors that do not train at the first seed, and compare every number: one line per "
                        "mismatch, exit status 1 when any")
    p.add_argument("--all", dest="check_all", action="store_true",
                   help=f"with --check: every published predictor (trainable ones to {TRAINABLE_TOLERANCE:g}) at every seed")
    p.add_argument("--work", type=Path, default=None, metavar="DIR",
                   help="with --check: the folder the re-runs write into, kept (default: a temporary folder, removed)")
    p.add_argument("--allow-ray", action="store_true",
                   help="with --check: re-run published commands that name --executor ray or --ray-address there "
                        "(default: refused, since the folder chooses the cluster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.check is not None:
        return check(args)
    if args.check_all or args.work is not None or args.allow_ray:
        raise BenchError("--all, --work and --allow-ray go with --check FOLDER")
    for run_dir in args.run_dirs or [DEFAULT_RUN_DIR]:
        if not run_dir.is_dir():
            raise BenchError(f"{run_dir}: run folder not found (run `bench run` first)")
    for path in args.table1:
        if not path.is_file():
            raise BenchError(f"{path}: Table 1 file not found (write it with `bench pretrain --out {path}`)")
    out = writable_dir(args.out or DEFAULT_BOARD)
    with folder_lock(out):
        for path in write_leaderboard(args.run_dirs or [DEFAULT_RUN_DIR], out, args.table1):
            print(f"wrote {path}")
    return 0


def check(args: argparse.Namespace) -> int:
    """`--check FOLDER`: re-run its published commands, print each mismatch and the count compared;
    0 when every number reproduces, 1 otherwise."""
    if args.run_dirs or args.out is not None or args.table1:
        raise BenchError("--check FOLDER re-runs a published leaderboard: RUN_DIR, --out and --table1 are for publishing")
    scratch = tempfile.TemporaryDirectory(prefix="bench-check-") if args.work is None else nullcontext(writable_dir(args.work, "--work"))
    with scratch as work:
        outcome = check_published(args.check, Path(work), _run_quietly, trainable=args.check_all, first_seed_only=not args.check_all,
                                  allow_ray=args.allow_ray)
    if outcome.compared == 0 and not outcome.problems:
        raise BenchError(f"{args.check}: no published numbers to re-run (no finished runs of predictors that do not train; "
                         "--all re-runs every one)")
    for line in outcome.problems:
        print(line)
    scope = "every predictor at every seed" if args.check_all else "the predictors that do not train at the first seed"
    verdict = f"{len(outcome.problems)} mismatch(es)" if outcome.problems else "all reproduce"
    print(f"{args.check}: {outcome.compared:,} published numbers compared ({scope}): {verdict}")
    return 1 if outcome.problems else 0


def _run_quietly(argv: list[str]) -> int:
    """`bench ARGV...` with its printed leaderboard sent to stderr, so stdout holds the check's lines only."""
    with redirect_stdout(sys.stderr):
        return main(argv)
