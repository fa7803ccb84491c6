"""README's "## Commands" table stays in step with the CLI: every `--option` a row writes exists in
the parser of the subcommand it is written for, every subcommand has a row, and the `bench run` row
names every option of `bench run`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bench.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
SPAN = re.compile(r"`([^`]+)`")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
CELL_BORDER = re.compile(r"(?<!\\)\|")  # a table cell border; `\|` is a pipe inside a cell


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each `bench` subcommand, by name."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def option_groups(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """The option strings of each optional argument (aliases together), help left out."""
    return [tuple(a.option_strings) for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def command_rows(readme: str) -> dict[str, str]:
    """The rows of the Commands table whose first cell names a `bench <command>`, by command."""
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = CELL_BORDER.split(line)[1:-1]
        found = re.match(r"`bench (\w[\w-]*)", cells[0].strip()) if cells else None
        if found:
            rows[found.group(1)] = rows.get(found.group(1), "") + line
    return rows


def written_options(command: str, row: str) -> list[tuple[str, str]]:
    """(subcommand, option) for every `--option` of a row: one inside a code span that starts with
    `bench <other>` belongs to that other command, every other one to the row's own."""
    found = []
    for span in SPAN.findall(row):
        owner = re.match(r"bench (\w[\w-]*)", span)
        found += [(owner.group(1) if owner else command, option) for option in OPTION.findall(span)]
    found += [(command, option) for option in OPTION.findall(SPAN.sub(" ", row))]
    return found


def problems(readme: str, parser: argparse.ArgumentParser) -> list[str]:
    """Every mismatch between README's Commands table and the CLI, one line each (each once)."""
    parsers, rows = subcommands(parser), command_rows(readme)
    out = [f"bench {name}: no row in the Commands table" for name in parsers if name not in rows]
    out += [f"row `bench {name}`: no such subcommand" for name in rows if name not in parsers]
    for name, row in rows.items():
        for owner, option in written_options(name, row):
            if owner not in parsers:
                out.append(f"row `bench {name}`: `bench {owner}` is no subcommand")
            elif option not in {s for group in option_groups(parsers[owner]) for s in group}:
                out.append(f"row `bench {name}`: {option} is not an option of bench {owner}")
    in_run_row = {option for owner, option in written_options("run", rows.get("run", "")) if owner == "run"}
    out += [f"row `bench run`: option {group[0]} is missing" for group in option_groups(parsers["run"])
            if not in_run_row & set(group)]
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def test_readme_command_table_matches_the_cli(parser):
    assert problems(README.read_text(encoding="utf-8"), parser) == []


def test_a_renamed_or_missing_option_or_row_is_caught(parser):
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    row = {name: next(i for i, line in enumerate(lines) if line.startswith(f"| `bench {name} "))
           for name in ("run", "leaderboard", "data")}
    lines[row["run"]] = lines[row["run"]].replace("--save-predictions", "--save-preds")
    lines[row["leaderboard"]] = lines[row["leaderboard"]].replace("--table1", "--table-one")
    del lines[row["data"]]
    found = problems("".join(lines), parser)
    assert sorted(found) == sorted([
        "row `bench run`: --save-preds is not an option of bench run",
        "row `bench run`: option --save-predictions is missing",
        "row `bench leaderboard`: --table-one is not an option of bench leaderboard",
        "bench data: no row in the Commands table",
    ])
