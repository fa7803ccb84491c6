"""Publishing: gather run folders per split, aggregate over seeds, and write the leaderboard folder
(markdown pages, PNG plots, and the machine-readable results a reproduction check reads back)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from bench import plots
from bench.board import (
    EPOCH_KEY,
    HEADLINE_COLUMNS,
    REPLICATE_SUFFIX,
    SELECTIONS,
    Board,
    across,
    column_groups,
    higher_is_better,
    is_reference,
    load_boards,
    pooled_conditions,
    read_json,
)
from bench.claims import render_claims
from bench.evaluation import calibrated
from bench.headline import headline, headline_metrics, interval
from bench.io import atomic_write_csv, atomic_write_json, atomic_write_text
from bench.stability import detectable, headline_scores, mean_kendall_tau, separations, verdict
from bench.table1 import UNITS, markdown
from metrics import METRICS

MANIFEST = "published.json"
CLAIMS_PAGE = "claims.md"
RESULTS = "results.csv"


def summary_frame(board: Board, selection: str) -> pd.DataFrame:
    """One row per successful predictor (registry order): mean and sd over seeds of every metric,
    the selected epoch and seconds per epoch."""
    rows = []
    ok = board.ok()
    for name in board.predictors:
        runs = sorted((r for r in ok if r["predictor"] == name), key=lambda r: r["seed"])
        if not runs:
            continue
        row = {"predictor": name, "seeds": len(runs), "reference": is_reference(runs[0])}
        for key, values in [(m, [(r.get(selection) or {}).get(m) for r in runs]) for m in board.metrics] + [
            ("sec_per_epoch", [r.get("seconds_per_epoch") for r in runs]),
        ]:
            vals = np.array([v for v in values if v is not None and not pd.isna(v)], dtype=float)
            row[key] = vals.mean() if vals.size else np.nan
            row[f"{key}_sd"] = vals.std(ddof=1) if vals.size > 1 else np.nan
        epochs = [str(int(r[EPOCH_KEY[selection]])) for r in runs if r.get(EPOCH_KEY[selection]) is not None]
        row["epoch"] = ", ".join(epochs) or "-"  # one per seed: a mean epoch would hide disagreement
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: float, digits: int = 3) -> str:
    if pd.isna(value):
        return "-"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def best_values(frame: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """The displayed best value of each metric column among non-reference rows (direction-aware)."""
    best = {}
    candidates = frame[~frame["reference"]]
    for col in columns:
        direction = higher_is_better(col)
        values = candidates[col].dropna() if col in candidates else pd.Series(dtype=float)
        if direction is None or values.empty:
            continue
        best[col] = _fmt(values.max() if direction else values.min())
    return best


def markdown_table(frame: pd.DataFrame, metrics: list[str], extra: dict[str, str]) -> str:
    """Markdown table: metric columns as mean ± sd (best in bold), then `extra` columns (key -> heading)."""
    metrics = [m for m in metrics if m in frame]
    if frame.empty or not metrics:
        return "(no successful runs)"
    best = best_values(frame, metrics)
    head = ["predictor", *metrics, *extra.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in frame.iterrows():
        cells = [f"{row['predictor']} (reference)" if row["reference"] else row["predictor"]]
        for m in metrics:
            text = _fmt(row[m])
            sd = row.get(f"{m}_sd", np.nan)
            cell = text + ("" if pd.isna(sd) else f" ± {sd:.3f}")
            cells.append(f"**{cell}**" if best.get(m) == text and text != "-" else cell)
        cells += [str(row[key]) if isinstance(row[key], (str, int, np.integer)) else _fmt(row[key], 2) for key in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _describe_data(meta: dict) -> str:
    data = meta.get("data", {})
    rest = ", ".join(f"{k}={v}" for k, v in data.items() if k != "name")
    return f"{data.get('name', '?')}" + (f" ({rest})" if rest else "")


def provenance_lines(board: Board) -> list[str]:
    """Data set, hold-out, seeds, exact commands and software versions of a split's runs."""
    meta = board.meta
    summary = meta.get("split_summary", {})
    counts = {k: v for k, v in summary.items() if not k.endswith("_names")}
    seeds = sorted({r["seed"] for r in board.results})
    lines = [
        f"- Data: {_describe_data(meta)}",
        f"- Split: `{board.split}` {json.dumps(counts)}" if counts else f"- Split: `{board.split}`",
        f"- Held-out test drugs: {', '.join(summary.get('test_drug_names', [])) or '?'}; "
        f"validation drugs: {', '.join(summary.get('val_drug_names', [])) or '?'}",
        f"- Seeds: {', '.join(map(str, seeds))}",
    ]
    lines += [f"- Command: `{m.get('command', '?')}`" for m in board.metas]
    versions = {k: v for m in board.metas for k, v in m.get("versions", {}).items()}
    lines.append(f"- Versions: {', '.join(f'{k} {v}' for k, v in versions.items()) or '?'}")
    return lines


def predictor_order(boards: list[Board]) -> list[str]:
    return list(dict.fromkeys(n for b in boards for n in b.predictors))


def headline_frame(boards: Board | list[Board]) -> pd.DataFrame:
    """Every predictor (references included) with its headline over seeds (validation-selected
    epoch; pooled over folds and split seeds when given several boards), its 95% interval from a
    bootstrap over held-out drugs and its calibrated components, best first; plus a `replicate` row:
    half of the true cells predicting the other half. Computed once per group of boards."""
    return _headlines(tuple([boards] if isinstance(boards, Board) else boards)).copy()


@lru_cache(maxsize=64)
def _headlines(boards: tuple[Board, ...]) -> pd.DataFrame:
    boards = list(boards)
    rows, replicate = [], None
    for name in predictor_order(boards):
        frame = across(boards, name)
        if frame.empty or not headline_metrics(frame):
            continue
        low, high = interval(frame)
        runs = [r for b in boards for r in b.ok() if r["predictor"] == name]
        row = {"predictor": name, "reference": is_reference(runs[0]), "headline": headline(frame),
               "low": low, "high": high, "seeds": len({r["seed"] for r in runs})}
        row.update({f"{m}_norm": calibrated(frame, m) for m in headline_metrics(frame)})
        rows.append(row)
        if replicate is None and all(f"{m}_replicate" in frame for m in headline_metrics(frame)):
            ref = frame.assign(**{m: frame[f"{m}_replicate"] for m in headline_metrics(frame)}).dropna()
            replicate = {"predictor": "replicate", "reference": True, "headline": headline(ref), "low": np.nan,
                         "high": np.nan, "seeds": 0, **{f"{m}_norm": calibrated(ref, m) for m in headline_metrics(ref)}}
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("headline", ascending=False, kind="stable")
    return pd.concat([frame, pd.DataFrame([replicate])], ignore_index=True) if replicate else frame.reset_index(drop=True)


def stability_lines(boards: list[Board], pairs: list[dict] | None = None) -> list[str]:
    """Kendall tau of the headline ranking (non-reference predictors) across model seeds and, with
    several boards, across folds or split seeds; then the ranking written with the separations its drug-level
    intervals support."""
    ranked = ranking(boards)
    if len(ranked) < 2:
        return []
    names = ranked["predictor"].tolist()
    model_seeds = sorted({r["seed"] for b in boards for r in b.ok()})
    by_seed = [headline_scores({n: across(boards, n, seed) for n in names}) for seed in model_seeds]
    tau, n_pairs = mean_kendall_tau(by_seed)
    lines = [f"- Across model seeds ({', '.join(map(str, model_seeds))}): mean Kendall tau "
             + (f"{tau:.2f} over {n_pairs} pair(s) of seeds." if n_pairs else "not available (one seed).")]
    if len(boards) > 1:
        by_split = [headline_scores({n: pooled_conditions(b, n) for n in names}) for b in boards]
        tau, n_pairs = mean_kendall_tau(by_split)
        what = (f"the {len(boards)} folds ({', '.join(b.label for b in boards)}; each tests other drugs)"
                if any(b.fold is not None for b in boards) else f"split seeds ({', '.join(str(b.split_seed) for b in boards)})")
        lines.append(f"- Across {what}: mean Kendall tau {tau:.2f} over {n_pairs} pair(s).")
    pairs = neighbour_pairs(boards) if pairs is None else pairs
    lines.append(f"- Supported by drug-level 95% paired intervals (`>` separated, `≈` not): {verdict(pairs)}")
    return lines


def ranking(boards: Board | list[Board]) -> pd.DataFrame:
    """Non-reference predictors ranked by the headline (validation-selected epoch, pooled over seeds)."""
    frame = headline_frame(boards)
    return frame if frame.empty else frame[~frame["reference"]].reset_index(drop=True)


def headline_table(frame: pd.DataFrame) -> str:
    """Markdown: rank, predictor, headline with its drug-bootstrap interval, then the calibrated
    components and any per-split-seed headline columns."""
    if frame.empty:
        return "(no successful runs with the headline metrics)"
    parts = [c for c in frame.columns if c.endswith("_norm") or c.startswith("split seed")]
    head = ["rank", "predictor", "headline", "95% interval (drugs)", *parts, "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rank = 0
    for _, row in frame.iterrows():
        rank += not row["reference"]
        label = f"{row['predictor']} (reference)" if row["reference"] else row["predictor"]
        spread = "-" if pd.isna(row["low"]) else f"{row['low']:.3f} to {row['high']:.3f}"
        values = [_fmt(row[c]) for c in parts]
        lines.append(f"| {'-' if row['reference'] else rank} | {label} | {_fmt(row['headline'])} | {spread} | "
                     + " | ".join(values) + f" | {row['seeds'] or '-'} |")
    return "\n".join(lines)


def neighbour_pairs(boards: Board | list[Board]) -> list[dict]:
    """The ranking's adjacent pairs (best first) with their paired drug-level comparison."""
    return list(_pairs(tuple([boards] if isinstance(boards, Board) else boards)))


@lru_cache(maxsize=64)
def _pairs(boards: tuple[Board, ...]) -> tuple[dict, ...]:
    boards = list(boards)
    ranked = ranking(boards)
    names = ranked["predictor"].tolist() if not ranked.empty else []
    return tuple(separations(names, {n: across(boards, n) for n in names})) if len(names) > 1 else ()


def significance_lines(boards: Board | list[Board], pairs: list[dict] | None = None) -> list[str]:
    """The top non-reference predictor against the next on the headline (paired bootstrap over
    held-out drugs, one-sided Wilcoxon signed-rank test over per-drug differences), and the smallest
    difference this page can detect (80% power, 5% level) from the per-drug spread of its neighbours."""
    pairs = neighbour_pairs(boards) if pairs is None else pairs
    if not pairs:
        return []
    cmp, (mde, n) = pairs[0], detectable(pairs)
    top = [cmp["above"], cmp["below"]]
    if pd.isna(cmp["low"]):
        return [f"{top[0]} vs {top[1]}: headline difference {cmp['difference']:+.3f}; one held-out drug, no interval."]
    seen = f"the smallest difference this page detects with 80% power at the 5% level is {mde:.3f} ({n} drugs)"
    verdict = (f"{top[0]} is ahead of {top[1]} at the 95% level; {seen}" if cmp["low"] > 0 else
               f"not separated at the 95% level; differences below {mde:.3f} cannot be seen here (80% power, 5% level, {n} drugs)")
    return [
        f"{top[0]} vs {top[1]} over {cmp['drugs']} held-out drugs: headline difference {cmp['difference']:+.3f} "
        f"(95% paired bootstrap interval {cmp['low']:+.3f} to {cmp['high']:+.3f}); {top[0]} ahead on "
        f"{cmp['ahead']}/{cmp['drugs']} drugs, Wilcoxon signed-rank one-sided p = {cmp['p']:.3g}. "
        f"Verdict: {verdict}."
    ]


def failure_lines(board: Board) -> list[str]:
    failed = [r for r in board.results if r["status"] != "ok"]
    return [f"- {r['predictor']} (seed {r['seed']}): {r['status']}: {r.get('error')}" for r in failed]


HEADLINE_NOTE = (
    "Headline: the mean of four calibrated scores (0 = the real control cells as the prediction, 1 = a "
    "perfect prediction; below 0 = worse than no change): mean change on the top-50 DE genes "
    "(`delta_DE50`), DE-gene recovery (`overlap_at_N`), distribution distance (`energy_DE50`) and "
    "discrimination among the split's conditions (`discrimination_score_l1`), each counted at no less "
    "than -1 in the mean. Validation-selected epoch, "
    "scores pooled over seeds per condition; intervals: 95% percentile bootstrap over held-out drugs. "
    "`replicate` is a reference, not a method: half of the true cells predicting the other half."
)
HONEST_NOTE = (
    "Validation-selected: a trainable predictor is scored at the epoch with the best headline score on "
    "the validation drugs; the test drugs play no part in choosing it."
)
PAPER_NOTE = (
    "The paper's Table 2 protocol: a trainable predictor is scored at the epoch with the best *test* "
    "score (mean of the six paper metrics; optimistic: the test set chooses the model). Kept for "
    "comparability with the paper."
)
CALIBRATED_NOTE = (
    "Calibrated scores: 0 = the real control cells used as the prediction, 1 = the metric's best value; "
    "for distances 1 - score/floor. Aggregated as a "
    "ratio of means over test conditions. The `replicate` row is a reference (half the truth)."
)


def replicate_row(board: Board, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with a reference row of the replicate scores (calibrated columns only)."""
    refs = {}
    for col in board.reference_columns:
        vals = [(r.get("val_selected") or {}).get(col) for r in board.ok()]
        vals = [v for v in vals if v is not None and not pd.isna(v)]
        if vals:
            refs[col.replace(REPLICATE_SUFFIX, "_norm")] = float(np.mean(vals))
    if not refs or frame.empty:
        return frame
    return pd.concat([frame, pd.DataFrame([{"predictor": "replicate", "reference": True, **refs}])], ignore_index=True)


def render_split_page(board: Board, plots: dict[str, str] | None = None) -> str:
    """The markdown page of one split: headline ranking, paper-protocol table, honest tables,
    calibrated scores, plots, provenance."""
    plots = plots or {}
    groups = column_groups(board.metrics)
    paper = summary_frame(board, "test_selected")
    honest = summary_frame(board, "val_selected")
    pairs = neighbour_pairs(board)
    parts = [f"# Leaderboard: `{board.split}`", "", *forest_line(plots, FOREST), *provenance_lines(board), ""]
    parts += [
        "## Headline ranking", "", HEADLINE_NOTE, "", headline_table(headline_frame(board)), "",
        *significance_lines(board, pairs), "",
        "### Ranking stability", "", *(stability_lines([board], pairs) or ["Fewer than two ranked predictors."]), "",
        "Below, each metric is computed per held-out test condition (cell type, drug, dose) and averaged over",
        "conditions; cells show mean ± standard deviation over seeds. **Bold** marks the best value of a",
        "column among non-reference predictors (direction from the metric registry); `(reference)` rows",
        "are bounds, not methods. Every predictor gets the same number of controls per condition and its set is capped at that "
        "size; the paper's six and the mean-based metrics use every predicted cell, the set-size-dependent ones a seeded "
        "sample of the truth's cell count.",
        "`s/epoch` is the median training time per epoch (evaluation excluded).",
        "",
        "## Paper protocol (Table 2 columns, best-test epoch)",
        "",
        PAPER_NOTE,
        "",
        markdown_table(paper, groups["paper"], {"epoch": "epoch (best test, per seed)"}),
        "",
        "## Honest: validation-selected epoch",
        "",
        HONEST_NOTE,
        "",
        markdown_table(honest, groups["paper"], {"epoch": "epoch (val, per seed)", "sec_per_epoch": "s/epoch", "seeds": "seeds"}),
        "",
    ]
    if groups["beyond"]:
        parts += ["### Beyond the paper (validation-selected epoch)", "",
                  markdown_table(honest, groups["beyond"], {}), ""]
    if groups["norm"]:
        parts += ["### Calibrated scores (validation-selected epoch)", "", CALIBRATED_NOTE, "",
                  markdown_table(replicate_row(board, honest), groups["norm"], {}), ""]
    others = {title: path for title, path in plots.items() if title != FOREST}
    if others:
        parts += ["## Plots", ""] + [f"![{title}]({path})" for title, path in others.items()] + [""]
    failures = failure_lines(board)
    parts += ["## Failed or skipped", ""] + (failures or ["None."]) + [""]
    described = [m for m in board.metrics if m in METRICS]
    if described:
        parts += ["## Metrics", ""] + [f"- `{m}` (best {METRICS[m].best:g}): {METRICS[m].description}" for m in described] + [""]
    return "\n".join(parts)


def render_markdown(run_dirs: Path | list[Path]) -> str:
    """The leaderboard pages of run folders (what `bench run` prints), without plots: one per split
    seed, then the pooled page of a split run under several split seeds."""
    folders = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    boards = load_boards(folders)
    pages = [render_split_page(b) for b in boards.values()]
    pages += [render_pooled_page(base, group) for base, group in split_groups(boards).items() if len(group) > 1]
    return "\n".join(pages)


def split_groups(boards: dict[str, Board]) -> dict[str, list[Board]]:
    """Boards grouped by their split's registered name (one per split seed and fold)."""
    groups: dict[str, list[Board]] = {}
    for board in boards.values():
        groups.setdefault(board.base, []).append(board)
    return {base: sorted(group, key=lambda b: (b.split_seed, -1 if b.fold is None else b.fold)) for base, group in groups.items()}


def data_set_lines(groups: dict[str, list[Board]]) -> list[str]:
    """Kendall tau of the headline ranking between data sets (e.g. generator presets) run on the
    same split: does the verdict survive a change of data?"""
    by_split: dict[str, list[pd.Series]] = {}
    for group in groups.values():
        names = ranking(group)["predictor"].tolist() if not ranking(group).empty else []
        split = group[0].meta.get("split", group[0].base)
        by_split.setdefault(split, []).append(headline_scores({n: across(group, n) for n in names}))
    lines = []
    for split, rankings in by_split.items():
        if len(rankings) > 1:
            tau, pairs = mean_kendall_tau(rankings)
            lines += [f"## Across data sets: `{split}`", "",
                      f"Mean Kendall tau of the headline ranking between the {len(rankings)} data sets: {tau:.2f} "
                      f"({pairs} pair(s); predictors each data set ranks).", ""]
    return lines


def pooled_label(boards: list[Board]) -> str:
    """What a pooled page pools: '5 folds (every drug tested once)', 'split seeds 0, 1', or both."""
    folds = {(b.meta.get("split_summary") or {}).get("folds") for b in boards if b.fold is not None}
    seeds = sorted({b.split_seed for b in boards})
    parts = [f"{max(folds)} folds (every held-out drug tested once{' per split seed' if len(seeds) > 1 else ''})"] if folds else []
    if len(seeds) > 1 or not folds:
        parts.append(f"split seeds {', '.join(map(str, seeds))}")
    return " x ".join(parts)


def forest_line(plots: dict[str, str] | None, key: str) -> list[str]:
    """The markdown image line of a page's forest plot, when one was drawn."""
    return [f"![Headline forest plot]({plots[key]})", ""] if plots and key in plots else []


def render_pooled_page(base: str, boards: list[Board], plots: dict[str, str] | None = None) -> str:
    """The page of one split run in several folds or split seeds: the headline pooled over all of
    them (drug bootstrap over every held-out drug), the verdict with its detectable difference, each
    fold's (or split seed's) headline, and the ranking's stability."""
    pooled = headline_frame(boards)
    for board in boards:
        one = headline_frame(board)
        per_board = one.set_index("predictor")["headline"] if not one.empty else {}
        pooled[board.label] = [per_board.get(n, np.nan) for n in pooled["predictor"]]
    pairs = neighbour_pairs(boards)
    parts = [f"# Leaderboard: `{base}`, pooled over {pooled_label(boards)}", "", *forest_line(plots, FOREST),
             f"- Data: {_describe_data(boards[0].meta)}",
             *[f"- [{b.label}]({b.split}.md): test drugs {', '.join((b.meta.get('split_summary') or {}).get('test_drug_names', [])) or '?'}"
               for b in boards], "",
             "## Headline ranking, pooled", "", HEADLINE_NOTE, "",
             headline_table(pooled), "", *significance_lines(boards, pairs), "",
             "## Ranking stability", "", *stability_lines(boards, pairs), ""]
    return "\n".join(parts)


FOREST = "forest"  # key of the forest plot in a page's plots


def render_overview(boards: dict[str, Board], reproduce: list[str], plots: dict[str, dict[str, str]] | None = None) -> str:
    """leaderboard/README.md: each data set and split with its headline ranking (pooled over folds
    and split seeds where there are several, with links to each one's page), its verdict and forest
    plot, and how to reproduce. `plots`: page name -> its plots."""
    plots = plots or {}
    parts = [
        "# bench leaderboard",
        "",
        "Predictors of single-cell drug responses on drugs unseen in single-cell training, ranked by the",
        "headline score. " + HEADLINE_NOTE,
        "",
        "Each split's page adds the paper's Table 2 columns (best-test-epoch protocol), the honest",
        "validation-selected tables, every calibrated score, plots, the exact commands, software versions",
        "and any failed or skipped predictor. The seed paper's claims, tested on these runs: [claims.md](claims.md).",
        "",
    ]
    groups = split_groups(boards)
    for base, group in groups.items():
        if len(group) == 1:
            board = group[0]
            seeds = ", ".join(map(str, sorted({r["seed"] for r in board.results})))
            parts += [f"## [`{board.split}`]({board.split}.md)", "", *forest_line(plots.get(board.split), FOREST),
                      f"Data: {_describe_data(board.meta)}; seeds: {seeds}.", "",
                      headline_table(headline_frame(board)), "", *significance_lines(board), "",
                      f"Full tables, plots and provenance: [{board.split}.md]({board.split}.md).", ""]
            continue
        seeds = ", ".join(map(str, sorted({r["seed"] for b in group for r in b.results})))
        page = f"{base}-pooled"
        pairs = neighbour_pairs(group)
        parts += [f"## [`{base}`, pooled over {pooled_label(group)}]({page}.md)", "", *forest_line(plots.get(page), FOREST),
                  f"Data: {_describe_data(group[0].meta)}; model seeds: {seeds}.", "",
                  headline_table(headline_frame(group)), "", *significance_lines(group, pairs), "",
                  *stability_lines(group, pairs), "",
                  "Each one's full tables, plots and provenance: "
                  + ", ".join(f"[{b.label}]({b.split}.md)" for b in group) + ".", ""]
    parts += data_set_lines(groups)
    parts += [
        "## Reproduce",
        "",
        "```bash",
        *reproduce,
        "```",
        "",
        f"`{RESULTS}` holds every run's numbers (one row per split, predictor, seed and epoch selection) and",
        f"`{MANIFEST}` the commands, data and versions behind them; `tests/test_leaderboard_repro.py` re-runs the",
        "cheap predictors at the published seeds and checks these numbers.",
        "",
    ]
    return "\n".join(parts)


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
            if r["status"] != "ok":
                rows.append({**base, "selection": None})
                continue
            for sel in SELECTIONS:
                rows.append({**base, "selection": sel, "epoch": r.get(EPOCH_KEY[sel]),
                             **{m: (r.get(sel) or {}).get(m) for m in metrics}})
    return pd.DataFrame(rows)


def reproduce_commands(boards: dict[str, Board], out_dir: Path, table1: list[Path] | None = None) -> list[str]:
    """The commands behind a rendering: each run command once (one command may have written several
    split-seed folders), then the leaderboard command itself."""
    commands = list(dict.fromkeys(m.get("command", "?") for b in boards.values() for m in b.metas))
    pretrain = [c for path in table1 or [] if "command" in (frame := pd.read_csv(path)) for c in frame["command"].dropna().unique()]
    dirs = " ".join(m["run_dir"] for b in boards.values() for m in b.metas)
    tables = "".join(f" --table1 {path}" for path in table1 or [])
    return [*commands, *pretrain, f"bench leaderboard {dirs}{tables} --out {out_dir}"]


def table1_lines(tables: list[Path]) -> list[str]:
    """The overview's Table 1 section: each `bench pretrain --out` table under its data set's name."""
    lines = ["## Table 1: PertBERT pre-training on the bulk set", "",
             "Held-out bulk profiles; " + UNITS + ". Reproduce with `bench pretrain [--preset P] --out FILE.csv`.", ""]
    for path in tables:
        frame = pd.read_csv(path)
        data = frame["data"].iloc[0] if "data" in frame and len(frame) else Path(path).stem
        lines += [f"Data: {data}", "", markdown(frame), ""]
    return lines


def write_leaderboard(run_dirs: list[Path], out_dir: Path, table1: list[Path] | None = None) -> list[Path]:
    """Render run folders into OUT_DIR: README.md, <split>.md, plots/*.png, results.csv and the
    manifest (and Table 1 from `bench pretrain` tables, when given); files a previous rendering
    wrote and this one does not are removed."""
    out_dir = Path(out_dir)
    boards = load_boards(list(run_dirs))
    old = read_json(out_dir / MANIFEST).get("files", []) if (out_dir / MANIFEST).exists() else []
    written: list[Path] = []
    shown: dict[str, dict[str, str]] = {}  # page name -> its plots (paths relative to out_dir)

    def draw(name: str, group: list[Board], images: dict[str, Path]) -> dict[str, str]:
        title = f"{name}: headline, 95% interval over held-out drugs"
        drawn = plots.forest(headline_frame(group), detectable(neighbour_pairs(group))[0], out_dir / "plots" / f"{name}_forest.png", title)
        images = ({FOREST: drawn} if drawn else {}) | images
        written.extend(images.values())
        shown[name] = {t: p.relative_to(out_dir).as_posix() for t, p in images.items()}
        return shown[name]

    for split, board in boards.items():
        page = out_dir / f"{split}.md"
        atomic_write_text(page, render_split_page(board, draw(split, [board], plots.split_plots(board, out_dir / "plots"))))
        written.append(page)
    for base, group in split_groups(boards).items():
        if len(group) > 1:
            page = out_dir / f"{base}-pooled.md"
            atomic_write_text(page, render_pooled_page(base, group, draw(f"{base}-pooled", group, {})))
            written.append(page)
    atomic_write_text(out_dir / CLAIMS_PAGE, render_claims(split_groups(boards)))
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
    for stale in set(old) - set(files) - {MANIFEST}:
        if ".." not in Path(stale).parts and not Path(stale).is_absolute():
            (out_dir / stale).unlink(missing_ok=True)
    return [out_dir / "README.md", *(p for p in written if p.suffix == ".md" and p.name != "README.md")]
