"""Publishing: gather run folders per split, aggregate over seeds and folds, and write the
leaderboard folder (markdown pages, PNG plots, the claims page, and the machine-readable results a
reproduction check reads back). Aggregation lives in bench/aggregate.py, markdown in bench/pages.py."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd

from bench import plots
from bench.aggregate import headline_frame, neighbour_pairs, ranking, results_frame, split_groups
from bench.board import SELECTIONS, Board, load_boards, pooled_conditions, read_json
from bench.claims import render_claims
from bench.errors import BenchError
from bench.io import atomic_write_csv, atomic_write_json, atomic_write_text, inside
from bench.pages import (
    CLAIMS_PAGE,
    FOREST,
    MANIFEST,
    RESULTS,
    best_values,
    render_overview,
    render_pooled_page,
    render_split_page,
    table1_lines,
)
from bench.stability import detectable

__all__ = ["MANIFEST", "RESULTS", "SELECTIONS", "Board", "best_values", "headline_frame", "load_boards", "pooled_conditions",
           "ranking", "render_markdown", "render_split_page", "results_frame", "split_groups", "write_leaderboard"]


def render_markdown(run_dirs: Path | list[Path]) -> str:
    """The leaderboard pages of run folders (what `bench run` prints), without plots: one per split
    seed, then the pooled page of a split run under several split seeds."""
    folders = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    boards = load_boards(folders)
    pages = [render_split_page(b) for b in boards.values()]
    pages += [render_pooled_page(base, group) for base, group in split_groups(boards).items() if len(group) > 1]
    return "\n".join(pages)


def reproduce_commands(boards: dict[str, Board], out_dir: Path, table1: list[Path] | None = None) -> list[str]:
    """The commands behind a rendering: each run command once (one command may have written several
    split-seed folders), then the leaderboard command itself."""
    commands = list(dict.fromkeys(m.get("command", "?") for b in boards.values() for m in b.metas))
    pretrain = [c for path in table1 or [] if "command" in (frame := pd.read_csv(path)) for c in frame["command"].dropna().unique()]
    dirs = " ".join(m["run_dir"] for b in boards.values() for m in b.metas)
    tables = "".join(f" --table1 {path}" for path in table1 or [])
    return [*commands, *pretrain, f"bench leaderboard {dirs}{tables} --out {out_dir}"]


def write_leaderboard(run_dirs: list[Path], out_dir: Path, table1: list[Path] | None = None) -> list[Path]:
    """Render run folders into OUT_DIR: README.md, <split>.md, plots/*.png, results.csv and the
    manifest (and Table 1 from `bench pretrain` tables, when given); files a previous rendering
    wrote and this one does not are removed."""
    out_dir = Path(out_dir)
    boards = load_boards(list(run_dirs))
    previous = read_json(out_dir / MANIFEST) if (out_dir / MANIFEST).exists() else {}
    old = previous.get("files", []) if isinstance(previous, dict) and isinstance(previous.get("files"), list) else []
    written: list[Path] = []
    shown: dict[str, dict[str, str]] = {}  # page name -> its plots (paths relative to out_dir)

    def draw(name: str, group: list[Board], images: dict[str, Path]) -> dict[str, str]:
        title = f"{name}: headline, 95% interval over clusters of held-out drugs and seeds"
        drawn = plots.forest(headline_frame(group), detectable(neighbour_pairs(group))[0], inside(out_dir, figures / f"{name}_forest.png"), title)
        images = ({FOREST: drawn} if drawn else {}) | images
        written.extend(images.values())
        shown[name] = {t: p.relative_to(out_dir).as_posix() for t, p in images.items()}
        return shown[name]

    figures = inside(out_dir, out_dir / "plots")  # board names are checked file names (bench/board.py)
    for split, board in boards.items():
        page = inside(out_dir, out_dir / f"{split}.md")
        atomic_write_text(page, render_split_page(board, draw(split, [board], plots.split_plots(board, figures))))
        written.append(page)
    for base, group in split_groups(boards).items():
        if len(group) > 1:
            page = inside(out_dir, out_dir / f"{base}-pooled.md")
            atomic_write_text(page, render_pooled_page(base, group, draw(f"{base}-pooled", group, {})))
            written.append(page)
    atomic_write_text(out_dir / CLAIMS_PAGE, render_claims(split_groups(boards), table1))
    written.append(out_dir / CLAIMS_PAGE)
    atomic_write_csv(out_dir / RESULTS, results_frame(boards))
    reproduce = reproduce_commands(boards, out_dir, table1)
    overview = render_overview(boards, reproduce, shown)
    if table1:
        head, _, tail = overview.partition("## Reproduce")
        overview = head + "\n".join(table1_lines(table1)) + "\n## Reproduce" + tail
    atomic_write_text(out_dir / "README.md", overview)
    written += [out_dir / RESULTS, out_dir / "README.md"]
    files = sorted(p.relative_to(out_dir).as_posix() for p in written)
    manifest = {
        "splits": {s: [{k: v for k, v in m.items() if k != "run_dir"} for m in b.metas] for s, b in boards.items()},
        "reproduce": reproduce,
        "files": files,
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    for stale in set(map(str, old)) - set(files) - {MANIFEST}:
        with contextlib.suppress(BenchError):  # a name the old manifest holds outside out_dir is left alone
            inside(out_dir, out_dir / stale).unlink(missing_ok=True)
    return [out_dir / "README.md", *(p for p in written if p.suffix == ".md" and p.name != "README.md")]
