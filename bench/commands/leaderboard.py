"""`bench leaderboard`: render the markdown leaderboard of a run folder into leaderboard/."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import BenchError
from bench.publish import write_leaderboard


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="render a run folder's results as the markdown leaderboard")
    p.add_argument("run_dir", nargs="?", type=Path, default=Path("bench-results"), help="run folder (default: ./bench-results)")
    p.add_argument("--out", type=Path, default=Path("leaderboard"), help="output folder (default: ./leaderboard)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        raise BenchError(f"{args.run_dir}: run folder not found (run `bench run` first)")
    path = write_leaderboard(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0
