"""The leaderboard's markdown: tables, verdict lines and notes, and the split, pooled and overview
pages, rendered from boards and their aggregates (bench/aggregate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.aggregate import headline_frame, neighbour_pairs, replicate_row, split_groups, summary_frame
from bench.board import Board, column_groups, higher_is_better
from bench.record import OK, TEST_SELECTED, VAL_SELECTED
from bench.sensitivity import sensitivity_lines
from bench.stability import data_set_lines, fmt, headline_table, resampling_lines, significance_lines, stability_lines
from bench.table1 import UNITS, markdown
from metrics import METRICS

MANIFEST = "published.json"
CLAIMS_PAGE = "claims.md"
RESULTS = "results.csv"


def best_values(frame: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """The displayed best value of each metric column among non-reference rows (direction-aware)."""
    best = {}
    candidates = frame[~frame["reference"]]
    for col in columns:
        direction = higher_is_better(col)
        values = candidates[col].dropna() if col in candidates else pd.Series(dtype=float)
        if direction is None or values.empty:
            continue
        best[col] = fmt(values.max() if direction else values.min())
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
            text = fmt(row[m])
            sd = row.get(f"{m}_sd", np.nan)
            cell = text + ("" if pd.isna(sd) else f" ± {sd:.3f}")
            cells.append(f"**{cell}**" if best.get(m) == text and text != "-" else cell)
        cells += [str(row[key]) if isinstance(row[key], (str, int, np.integer)) else fmt(row[key], 2) for key in extra]
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


def failure_lines(board: Board) -> list[str]:
    failed = [r for r in board.results if r["status"] != OK]
    return [f"- {r['predictor']} (seed {r['seed']}): {r['status']}: {r.get('error')}" for r in failed]


HEADLINE_NOTE = (
    "Headline: 0 = the mean baseline (`train_mean`: the training drugs' mean change per cell type and "
    "dose), 1 = a perfect prediction, below 0 = worse than the mean baseline. It is the mean of four "
    "calibrated scores: mean change on the condition's DE genes (`delta_DE50`), DE-gene recovery from "
    "the predicted change (`de_recall`), an unbiased energy distance on the DE genes (`energy_DE50`) "
    "and discrimination among the split's conditions (`discrimination_score_l1`), each a ratio of means "
    "over the conditions where it is defined (DE-set scores skip conditions without a significant true "
    "DE gene) and counted at no less than -1. `vs no change`: the same score with the real controls as 0; "
    "`activity AUROC`: does the predicted effect size tell conditions with significant DE genes from inert "
    "ones (0.5 = chance, per cell type; beside the headline, not in it)? Validation-selected epoch, "
    "scores pooled over seeds per condition; intervals: 95%, from a bootstrap over clusters of related "
    "held-out drugs, then each run's model seeds (below the table). "
    "`replicate` is a reference, not a method: half of the true cells predicting the other half."
)


HONEST_NOTE = (
    "Validation-selected: a trainable predictor is scored at the epoch with the best headline score on "
    "the validation drugs; the test drugs play no part in choosing it."
)


PAPER_NOTE = (
    "The paper's Table 2 protocol: a trainable predictor is scored at the epoch with the best *test* "
    "score (mean of the six paper metrics; optimistic: the test set chooses the model). Kept for "
    "comparability with the paper. `dis*` (and `cov*` below) are improper: a smooth prediction (every "
    "cell at the condition's mean) beats fresh cells of the true model on them, so they cannot judge a "
    "distribution; `energy_DE50` (unbiased) does."
)


CALIBRATED_NOTE = (
    "Calibrated scores: 0 = the mean baseline (`train_mean`) as the prediction, 1 = the metric's best value; "
    "for distances 1 - score/baseline. Aggregated as a ratio of means over the test conditions where the "
    "metric is defined (DE-set metrics skip inert conditions). The `replicate` row is a reference (half the truth)."
)


def render_split_page(board: Board, plots: dict[str, str] | None = None) -> str:
    """The markdown page of one split: headline ranking, paper-protocol table, honest tables,
    calibrated scores, plots, provenance."""
    plots = plots or {}
    groups = column_groups(board.metrics)
    paper = summary_frame(board, TEST_SELECTED)
    honest = summary_frame(board, VAL_SELECTED)
    pairs = neighbour_pairs(board)
    parts = [f"# Leaderboard: `{board.split}`", "", *forest_line(plots, FOREST), *provenance_lines(board), ""]
    parts += [
        "## Headline ranking", "", HEADLINE_NOTE, "", headline_table(headline_frame(board)), "",
        *resampling_lines([board]), "", *significance_lines(board, pairs), "",
        "### Ranking stability", "", *(stability_lines([board], pairs) or ["Fewer than two ranked predictors."]), "",
        *sensitivity_lines([board], "###"),
        "Below, each metric is computed per held-out test condition (cell type, drug, dose) and averaged over",
        "conditions; cells show mean ± standard deviation over seeds. **Bold** marks the best value of a",
        "column among non-reference predictors (direction from the metric registry); `(reference)` rows",
        "are bounds, not methods. Every predictor gets the same number of controls per condition and its set is capped at that "
        "size; the paper's six and the mean-based metrics use every predicted cell, the set-size-dependent ones a seeded "
        "sample of the truth's cell count.",
        "`s/epoch` is the median training time per epoch and `fit s` the training time of the whole fit (evaluation "
        "excluded; seconds depend on the machine); `steps` counts the gradient steps of the model's main optimisers and "
        "`weights` the parameters they trained, to the last trained epoch (bench/budget.py; '-': no torch training, or "
        "runs recorded before the count).",
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
        markdown_table(honest, groups["paper"], {"epoch": "epoch (val, per seed)", "sec_per_epoch": "s/epoch", "fit_seconds": "fit s",
                                                     "gradient_steps": "steps", "n_parameters": "weights", "seeds": "seeds"}),
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


def pooled_label(boards: list[Board]) -> str:
    """What a pooled page pools: '5 folds (every held-out drug tested once)', 'folds 1, 2 of 5', 'split seeds 0, 1', or both."""
    seeds = sorted({b.split_seed for b in boards})
    folded = [b for b in boards if b.fold is not None]
    parts = []
    if folded:
        k = max(int((b.meta.get("split_summary") or {}).get("folds") or 0) for b in folded)
        present = sorted({b.fold for b in boards if b.fold is not None})
        whole = len(present) == k and len(folded) == k * len(seeds)
        parts.append(f"{k} folds (every held-out drug tested once{' per split seed' if len(seeds) > 1 else ''})" if whole
                     else f"folds {', '.join(str(f + 1) for f in present)} of {k} (the other folds' drugs untested)")
    if len(seeds) > 1 or not folded:
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
             headline_table(pooled), "", *resampling_lines(boards), "", *significance_lines(boards, pairs), "",
             "## Ranking stability", "", *stability_lines(boards, pairs), "", *sensitivity_lines(boards)]
    return "\n".join(parts)


FOREST = "forest"  # key of the forest plot in a page's plots
ONE_THREAD = "OMP_NUM_THREADS=1 "  # how the published runs were computed, shown before their commands


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
                      headline_table(headline_frame(board)), "", *resampling_lines([board]), "", *significance_lines(board), "",
                      f"Full tables, plots and provenance: [{board.split}.md]({board.split}.md).", ""]
            continue
        seeds = ", ".join(map(str, sorted({r["seed"] for b in group for r in b.results})))
        page = f"{base}-pooled"
        pairs = neighbour_pairs(group)
        parts += [f"## [`{base}`, pooled over {pooled_label(group)}]({page}.md)", "", *forest_line(plots.get(page), FOREST),
                  f"Data: {_describe_data(group[0].meta)}; model seeds: {seeds}.", "",
                  headline_table(headline_frame(group)), "", *resampling_lines(group), "", *significance_lines(group, pairs), "",
                  *stability_lines(group, pairs), "",
                  "Each one's full tables, plots and provenance: "
                  + ", ".join(f"[{b.label}]({b.split}.md)" for b in group) + ".", ""]
    parts += data_set_lines(groups)
    parts += [
        "## Reproduce",
        "",
        "```bash",
        *(f"{ONE_THREAD}{c}" if c.startswith(("bench run", "bench pretrain")) else c for c in reproduce),
        "```",
        "",
        f"`{ONE_THREAD.strip()}`: one thread per process, as the published runs were computed (trainable predictors",
        "repeat exactly at a fixed thread count; the default pool of `bench run` gives each process its share of the CPUs).",
        f"`{RESULTS}` holds every run's numbers (one row per split, predictor, seed and epoch selection) and",
        f"`{MANIFEST}` the commands, data and versions behind them; `tests/test_leaderboard_repro.py` re-runs the",
        "cheap predictors at the published seeds and checks these numbers.",
        "",
    ]
    return "\n".join(parts)


def table1_lines(tables: list[Path]) -> list[str]:
    """The overview's Table 1 section: each `bench pretrain --out` table under its data set's name."""
    lines = ["## Table 1: PertBERT pre-training on the bulk set", "",
             "Held-out bulk profiles; " + UNITS + ". Reproduce with `bench pretrain [--preset P] --out FILE.csv`.", ""]
    for path in tables:
        frame = pd.read_csv(path)
        data = frame["data"].iloc[0] if "data" in frame and len(frame) else Path(path).stem
        lines += [f"Data: {data}", "", markdown(frame), ""]
    return lines
