"""Publishing: aggregate run results over seeds and render the markdown leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.io import atomic_write_text
from bench.runner import PAPER_METRICS, load_results
from metrics import METRICS

SELECTIONS = {
    "test_selected": "Paper protocol: each trainable predictor at the epoch with the best *test* score (optimistic)",
    "val_selected": "Honest: each trainable predictor at the epoch chosen on the validation drugs",
}


def summary_frame(results: list[dict], selection: str, metrics: list[str]) -> pd.DataFrame:
    """One row per predictor: mean and standard deviation over seeds of each metric, plus epochs."""
    rows = []
    ok = [r for r in results if r["status"] == "ok"]
    for name in dict.fromkeys(r["predictor"] for r in ok):
        runs = [r for r in ok if r["predictor"] == name]
        row = {"predictor": name, "seeds": len(runs), "reference": bool(runs[0].get("reference"))}
        for m in metrics:
            vals = np.array([r[selection][m] for r in runs], dtype=float)
            row[m] = vals.mean()
            row[f"{m}_sd"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
        epoch_key = "best_test_epoch" if selection == "test_selected" else "val_epoch"
        epochs = [r.get(epoch_key) for r in runs if r.get(epoch_key) is not None]
        row["epoch"] = float(np.mean(epochs)) if epochs else np.nan
        spe = [r["seconds_per_epoch"] for r in runs if r.get("seconds_per_epoch") is not None]
        row["sec_per_epoch"] = float(np.mean(spe)) if spe else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: float, sd: float, best: bool) -> str:
    if pd.isna(value):
        return "-"
    text = f"{value:.3f}" + (f" ± {sd:.3f}" if not pd.isna(sd) else "")
    return f"**{text}**" if best else text


def markdown_table(frame: pd.DataFrame, metrics: list[str]) -> str:
    """Markdown table with the best non-reference value of each metric in bold."""
    if frame.empty:
        return "(no successful runs)"
    head = ["predictor", *metrics, "epoch", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    candidates = frame[~frame["reference"]] if "reference" in frame else frame
    best = {}
    for m in metrics:
        col = candidates[m].dropna()
        if not col.empty:
            best[m] = col.max() if METRICS[m].higher_is_better else col.min()
    for _, row in frame.iterrows():
        name = f"{row['predictor']} (reference)" if row.get("reference") else row["predictor"]
        cells = [name] + [_cell(row[m], row.get(f"{m}_sd", np.nan), m in best and np.isclose(row[m], best[m])) for m in metrics]
        cells.append("-" if pd.isna(row["epoch"]) else f"{row['epoch']:.0f}")
        cells.append("-" if pd.isna(row["sec_per_epoch"]) else f"{row['sec_per_epoch']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(run_dir: Path) -> str:
    """The leaderboard page of one run folder."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    if not results:
        raise BenchError(f"{run_dir}: no run results found (expected runs/*/seed*/result.json)")
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    parts = [f"# Leaderboard: {meta.get('split', results[0]['split'])}", ""]
    if meta:
        parts += [
            f"- Data: {meta.get('data', {}).get('name', '?')} "
            f"({', '.join(f'{k}={v}' for k, v in meta.get('data', {}).items() if k != 'name')})",
            f"- Split: {json.dumps({k: v for k, v in meta.get('split_summary', {}).items() if not k.endswith('_names')})}",
            f"- Held-out test drugs: {', '.join(meta.get('split_summary', {}).get('test_drug_names', []))}",
            f"- Seeds: {', '.join(str(s) for s in meta.get('seeds', []))}",
            f"- Command: `{meta.get('command', '?')}`",
            f"- Versions: {', '.join(f'{k} {v}' for k, v in meta.get('versions', {}).items())}",
            "",
        ]
    parts += [
        "Metrics are computed per held-out test condition (cell type, drug, dose) and averaged; values are",
        "mean ± standard deviation over seeds. `epoch` is the selected epoch, `s/epoch` the median training",
        "seconds per epoch (evaluation excluded). Bold marks the best non-reference value.",
        "",
    ]
    for selection, title in SELECTIONS.items():
        parts += [f"## {title}", "", markdown_table(summary_frame(results, selection, PAPER_METRICS), PAPER_METRICS), ""]
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        parts += ["## Not run", ""] + [f"- {r['predictor']} (seed {r['seed']}): {r['status']}: {r['error']}" for r in failed] + [""]
    return "\n".join(parts)


def write_leaderboard(run_dir: Path, out_dir: Path) -> Path:
    """Render a run folder's leaderboard to OUT_DIR/README.md (atomically)."""
    path = Path(out_dir) / "README.md"
    atomic_write_text(path, render_markdown(run_dir))
    return path
