"""The `bench` command line: one module per subcommand under bench/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.errors import BenchError, io_failure, one_line

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = ["run", "check", "leaderboard", "list", "data", "pretrain", "score", "fetch", "prepare"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark predictors of single-cell drug responses on unseen drugs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bench.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"bench {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as exc:  # a read or write no reader or writer reported itself
        print(f"bench {args.command}: error: {one_line(io_failure(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
