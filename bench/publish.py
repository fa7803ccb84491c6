"""Publishing: gather run folders per split, aggregate over seeds, and write the leaderboard folder
(markdown pages, PNG plots, and the machine-readable results a reproduction check reads back)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.io import atomic_write_csv, atomic_write_json, atomic_write_text
from bench.runner import PAPER_METRICS
from metrics import METRICS

SELECTIONS = ("test_selected", "val_selected")
EPOCH_KEY = {"test_selected": "best_test_epoch", "val_selected": "val_epoch"}
REFERENCE_NAMES = {"oracle"}  # bounds, never "best"; a result's own `reference` flag also counts
OVERVIEW_EXTRA = ("delta", "delta_norm")  # honest columns the overview also shows when the results have them
MANIFEST = "published.json"
RESULTS = "results.csv"


@dataclass
class Board:
    """Everything published about one split: its run folders' metadata and every run's result."""

    split: str
    metas: list[dict] = field(default_factory=list)  # run.json of each run folder, with "run_dir"
    results: list[dict] = field(default_factory=list)  # result.json of each run, with "run_path"

    @property
    def predictors(self) -> list[str]:
        """Predictor names in registry order (run.json 'predictors'), then any others found."""
        names = [n for m in self.metas for n in m.get("predictors", [])]
        return list(dict.fromkeys(names + [r["predictor"] for r in self.results]))

    @property
    def metrics(self) -> list[str]:
        """Metric names present in the results: registry order first, then unknown ones as found."""
        found = dict.fromkeys(k for r in self.results for s in SELECTIONS for k in r.get(s) or {})
        raw = [m for m in METRICS if m in found and not m.endswith("_norm")]
        raw += [m for m in found if m not in METRICS and not m.endswith("_norm")]
        norms = [m for m in found if m.endswith("_norm")]
        base = {m: m.removesuffix("_norm") for m in norms}
        return raw + sorted(norms, key=lambda m: raw.index(base[m]) if base[m] in raw else len(raw))

    @property
    def meta(self) -> dict:
        return self.metas[0] if self.metas else {}

    def ok(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "ok"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_boards(run_dirs: list[Path]) -> dict[str, Board]:
    """Read run folders and group their results by split; runs of one split must share their data."""
    boards: dict[str, Board] = {}
    for run_dir in map(Path, run_dirs):
        paths = sorted(run_dir.glob("runs/*/seed*/result.json"))
        if not paths:
            raise BenchError(f"{run_dir}: no run results found (expected runs/*/seed*/result.json)")
        meta = _read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
        results = [{**_read_json(p), "run_path": str(p.parent)} for p in paths]
        split = meta.get("split") or results[0]["split"]
        board = boards.setdefault(split, Board(split))
        if board.metas and meta and (meta.get("data"), meta.get("split_summary")) != (board.meta.get("data"), board.meta.get("split_summary")):
            raise BenchError(
                f"{run_dir}: split '{split}' was run on other data or another hold-out than {board.meta['run_dir']}; "
                "publish them separately (--out)"
            )
        board.metas.append({**meta, "run_dir": str(run_dir)})
        # A later folder's run of the same predictor and seed replaces an earlier one.
        keep = {(r["predictor"], r["seed"]) for r in results}
        board.results = [r for r in board.results if (r["predictor"], r["seed"]) not in keep] + results
    return boards


def higher_is_better(metric: str) -> bool | None:
    """Direction of a metric column: from the registry; `<name>_norm` scores (0 = control-mean floor,
    1 = replicate ceiling) are higher-better; None for a column the registry does not know."""
    if metric in METRICS:
        return METRICS[metric].higher_is_better
    if metric.endswith("_norm"):
        return True
    return None


def is_reference(result: dict) -> bool:
    return bool(result.get("reference")) or result["predictor"] in REFERENCE_NAMES


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
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


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


def column_groups(metrics: list[str]) -> dict[str, list[str]]:
    """The paper's six metrics, the other raw metrics, and the normalised scores, in that order."""
    return {
        "paper": [m for m in PAPER_METRICS if m in metrics],
        "beyond": [m for m in metrics if m not in PAPER_METRICS and not m.endswith("_norm")],
        "norm": [m for m in metrics if m.endswith("_norm")],
    }


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


def condition_scores(board: Board, predictor: str) -> pd.Series:
    """Per test condition, the selection score (mean of the paper metrics) of `predictor` at its
    validation-selected epoch, averaged over seeds; indexed by (cell_type, drug, dose)."""
    per_seed = []
    for r in board.ok():
        path = Path(r.get("run_path", "")) / "conditions.csv"
        if r["predictor"] != predictor or not path.exists():
            continue
        frame = pd.read_csv(path)
        epoch = r.get("val_epoch")
        at = frame["epoch"].isna() if epoch is None else frame["epoch"] == epoch
        frame = frame[at & (frame["role"] == "test")]
        per_seed.append(frame.set_index(["cell_type", "drug", "dose"])[[m for m in PAPER_METRICS if m in frame]].mean(axis=1))
    return pd.concat(per_seed, axis=1).mean(axis=1) if per_seed else pd.Series(dtype=float)


def significance_lines(board: Board) -> list[str]:
    """Hook for `bench/stats.py`: its `paired_test(a, b)` gets the per-condition scores (pandas Series
    on the same test conditions) of the top non-reference predictor and the next, and returns a
    one-line summary; without that module the page says the test is not available."""
    try:
        from bench.stats import paired_test
    except ImportError:
        return ["Paired test (top predictor vs next, over test conditions): not available in this version (`bench/stats.py`)."]
    top = ranking(board)["predictor"].tolist()[:2]
    if len(top) < 2:
        return []
    a, b = (condition_scores(board, name) for name in top)
    common = a.index.intersection(b.index)
    summary = paired_test(a.loc[common], b.loc[common])
    return [f"Paired test over {len(common)} test conditions, {top[0]} vs {top[1]}: {summary}"]


def failure_lines(board: Board) -> list[str]:
    failed = [r for r in board.results if r["status"] != "ok"]
    return [f"- {r['predictor']} (seed {r['seed']}): {r['status']}: {r.get('error')}" for r in failed]


HONEST_NOTE = (
    "Validation-selected: a trainable predictor is scored at the epoch with the best validation-drug "
    "score (mean of the six paper metrics); the test drugs play no part in choosing it."
)
PAPER_NOTE = (
    "The paper's Table 2 protocol: a trainable predictor is scored at the epoch with the best *test* "
    "score (optimistic: the test set chooses the model). Kept for comparability with the paper."
)


def render_split_page(board: Board, plots: dict[str, str] | None = None) -> str:
    """The markdown page of one split: paper-protocol table, honest tables, plots, provenance."""
    plots = plots or {}
    groups = column_groups(board.metrics)
    paper = summary_frame(board, "test_selected")
    honest = summary_frame(board, "val_selected")
    parts = [f"# Leaderboard: `{board.split}`", "", *provenance_lines(board), ""]
    parts += [
        "Each metric is computed per held-out test condition (cell type, drug, dose) and averaged over",
        "conditions; cells show mean ± standard deviation over seeds. **Bold** marks the best value of a",
        "column among non-reference predictors (direction from the metric registry); `(reference)` rows",
        "are bounds, not methods. `s/epoch` is the median training time per epoch (evaluation excluded).",
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
        parts += ["### Normalised scores (0 = control-mean floor, 1 = replicate ceiling; validation-selected epoch)", "",
                  markdown_table(honest, groups["norm"], {}), ""]
    parts += [*significance_lines(board), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{title}]({path})" for title, path in plots.items()] + [""]
    failures = failure_lines(board)
    parts += ["## Failed or skipped", ""] + (failures or ["None."]) + [""]
    described = [m for m in board.metrics if m in METRICS]
    if described:
        parts += ["## Metrics", ""] + [f"- `{m}` (best {METRICS[m].best:g}): {METRICS[m].description}" for m in described] + [""]
    return "\n".join(parts)


def render_markdown(run_dir: Path) -> str:
    """The leaderboard page of a single run folder (what `bench run` prints), without plots."""
    boards = load_boards([Path(run_dir)])
    return "\n".join(render_split_page(b) for b in boards.values())


def ranking(board: Board) -> pd.DataFrame:
    """Non-reference predictors ranked by the validation-selected selection score (mean of the six paper metrics)."""
    frame = summary_frame(board, "val_selected")
    if frame.empty:
        return frame
    frame = frame[~frame["reference"]].copy()
    frame["score"] = frame[[m for m in PAPER_METRICS if m in frame]].mean(axis=1)
    return frame.sort_values("score", ascending=False)


def render_overview(boards: dict[str, Board], reproduce: list[str], top: int = 3) -> str:
    """leaderboard/README.md: every split with its best predictors, data set and how to reproduce."""
    parts = [
        "# bench leaderboard",
        "",
        "Predictors of single-cell drug responses on drugs unseen in single-cell training. One page per",
        "split; each page shows the paper's Table 2 columns (best-test-epoch protocol) and then the honest",
        "columns (validation-selected epoch, metrics beyond the paper, normalised scores), mean ± sd over seeds,",
        "with plots, the exact commands, software versions and any failed or skipped predictor.",
        "",
        f"Below, per split, the {top} best non-reference predictors by *score*: the mean of the paper's six",
        "metrics at the validation-selected epoch (the honest protocol), averaged over seeds.",
        "",
    ]
    for split, board in boards.items():
        ranked = ranking(board).head(top)
        seeds = ", ".join(map(str, sorted({r["seed"] for r in board.results})))
        cols = [m for m in [*PAPER_METRICS, *OVERVIEW_EXTRA] if m in ranked]
        parts += [f"## [`{split}`]({split}.md)", "", f"Data: {_describe_data(board.meta)}; seeds: {seeds}.", ""]
        if ranked.empty:
            parts += ["(no successful non-reference runs)", ""]
            continue
        parts += ["| rank | predictor | score | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
        for rank, row in enumerate(ranked.itertuples(index=False), 1):
            values = " | ".join(_fmt(getattr(row, m)) for m in cols)
            parts.append(f"| {rank} | {row.predictor} | {_fmt(row.score)} | {values} |")
        parts += ["", f"Full table, plots and provenance: [{split}.md]({split}.md).", ""]
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
        metrics, order = board.metrics, board.predictors
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


def reproduce_commands(boards: dict[str, Board], out_dir: Path) -> list[str]:
    commands = [m.get("command", "?") for b in boards.values() for m in b.metas]
    dirs = " ".join(m["run_dir"] for b in boards.values() for m in b.metas)
    return [*commands, f"bench leaderboard {dirs} --out {out_dir}"]


def write_leaderboard(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Render run folders into OUT_DIR: README.md, <split>.md, plots/*.png, results.csv and the
    manifest; files a previous rendering wrote and this one does not are removed."""
    from bench import plots

    out_dir = Path(out_dir)
    boards = load_boards(list(run_dirs))
    old = _read_json(out_dir / MANIFEST).get("files", []) if (out_dir / MANIFEST).exists() else []
    written: list[Path] = []
    for split, board in boards.items():
        images = plots.split_plots(board, out_dir / "plots")
        written += images.values()
        page = out_dir / f"{split}.md"
        atomic_write_text(page, render_split_page(board, {t: p.relative_to(out_dir).as_posix() for t, p in images.items()}))
        written.append(page)
    atomic_write_csv(out_dir / RESULTS, results_frame(boards))
    reproduce = reproduce_commands(boards, out_dir)
    atomic_write_text(out_dir / "README.md", render_overview(boards, reproduce))
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
    return [out_dir / "README.md", *(out_dir / f"{s}.md" for s in boards)]
