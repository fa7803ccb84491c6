"""`bench leaderboard`: publish one or more run folders as the leaderboard folder (markdown, plots, results.csv)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import BenchError
from bench.publish import write_leaderboard


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="publish run folders as the leaderboard: README.md, one page per split, plots")
    p.add_argument("run_dirs", nargs="*", type=Path, default=[Path("bench-results")], metavar="RUN_DIR",
                   help="run folders written by `bench run` (default: ./bench-results)")
    p.add_argument("--out", type=Path, default=Path("leaderboard"), help="output folder (default: ./leaderboard)")
    p.add_argument("--table1", type=Path, action="append", default=[], metavar="CSV",
                   help="a `bench pretrain --out` table to publish as Table 1 (repeatable: one per data set)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for run_dir in args.run_dirs:
        if not run_dir.is_dir():
            raise BenchError(f"{run_dir}: run folder not found (run `bench run` first)")
    for path in args.table1:
        if not path.is_file():
            raise BenchError(f"{path}: Table 1 file not found (write it with `bench pretrain --out {path}`)")
    for path in write_leaderboard(args.run_dirs, args.out, args.table1):
        print(f"wrote {path}")
    return 0
