"""Leaderboard plots (matplotlib, Agg backend, PNG): the headline forest plot, metric bars with seed
spread, per-epoch test curves of trainable predictors, and time per epoch."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench.board import Board, column_groups, is_reference  # noqa: E402
from bench.io import atomic_write_bytes  # noqa: E402
from bench.record import VAL_SELECTED

DPI = 110


def _fmt(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.3f}"


def _save(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(n: int, ncols: int = 3) -> tuple[plt.Figure, np.flatiter[np.ndarray]]:
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _finite(value) -> bool:
    return value is not None and not pd.isna(value)


def forest(frame: pd.DataFrame, detectable: float, path: Path, title: str) -> Path | None:
    """The headline verdict at a glance: one row per predictor (best first) with its point and 95%
    drug-level interval, the floors at 0, the oracle and replicate references marked, and the band
    of differences from the leader that the page cannot detect shaded."""
    if frame.empty:
        return None
    rows = frame.reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.28 * len(rows)))
    methods = rows[~rows["reference"]]
    if not methods.empty and np.isfinite(detectable):
        lead = float(methods["headline"].iloc[0])
        ax.axvspan(lead - detectable, lead, color="C0", alpha=0.12, lw=0,
                   label=f"within {detectable:.3f} of the leader: not detectable")
    ax.axvline(0.0, color="0.3", lw=1, ls="--", label="mean baseline (train_mean) = 0")
    for yi, (_, row) in zip(y, rows.iterrows()):
        ref = bool(row["reference"])
        color = "0.55" if ref else "C0"
        if _finite(row.get("low")) and _finite(row.get("high")):
            ax.plot([row["low"], row["high"]], [yi, yi], color=color, lw=2)
        ax.plot([row["headline"]], [yi], marker="D" if ref else "o", color=color, ms=5)
    labels = [f"{p} (reference)" if r else p for p, r in zip(rows["predictor"], rows["reference"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("headline (0 = the mean baseline, 1 = perfect), 95% interval over clusters of held-out drugs", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def metric_bars(board: Board, metrics: list[str], path: Path, title: str) -> Path | None:
    """One panel per metric: a bar per predictor at the seed mean (validation-selected epoch),
    the standard deviation over seeds as an error bar and each seed as a dot."""
    ok = board.ok()
    names = [n for n in board.predictors if any(r["predictor"] == n for r in ok)]
    metrics = [m for m in metrics if any(_finite((r.get(VAL_SELECTED) or {}).get(m)) for r in ok)]
    if not names or not metrics:
        return None
    references = {r["predictor"] for r in ok if is_reference(r)}
    fig, axes = _grid(len(metrics))
    x = np.arange(len(names))
    for ax, metric in zip(axes, metrics):
        written = [[(r.get(VAL_SELECTED) or {}).get(metric) for r in ok if r["predictor"] == n] for n in names]
        per_seed = [np.array([v for v in vals if v is not None and not pd.isna(v)], dtype=float) for vals in written]
        means = np.array([v.mean() if v.size else np.nan for v in per_seed])
        sds = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in per_seed])
        colors = ["0.7" if n in references else f"C{i % 10}" for i, n in enumerate(names)]
        bars = ax.bar(x, np.nan_to_num(means), yerr=sds, color=colors, capsize=3, alpha=0.85)
        ax.bar_label(bars, labels=[_fmt(v) for v in means], fontsize=7, padding=2)
        for i, vals in enumerate(per_seed):
            ax.plot(np.full(vals.size, x[i]), vals, "k.", ms=4)
        shown = np.concatenate([*[v for v in per_seed if v.size], means - sds, means + sds])
        lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
        pad = 0.08 * (max(hi, 0.0) - min(lo, 0.0)) + 0.02
        ax.set_ylim(min(lo, 0.0) - pad, max(hi, 0.0) + 2 * pad)
        ax.set_title(metric, fontsize=10)
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _epoch_tables(board: Board) -> dict[str, list[pd.DataFrame]]:
    """Per trainable predictor, the epochs.csv of each seed that has per-epoch rows."""
    tables: dict[str, list[pd.DataFrame]] = {}
    for r in board.ok():
        path = Path(r.get("run_path", "")) / "epochs.csv"
        if not r.get("trainable") or not path.exists():
            continue
        frame = pd.read_csv(path)
        if "epoch" in frame and frame["epoch"].notna().any():
            tables.setdefault(r["predictor"], []).append(frame.assign(seed=r["seed"]))
    return {n: tables[n] for n in board.predictors if n in tables}


def epoch_curves(board: Board, path: Path) -> Path | None:
    """Per trainable predictor, one line per seed: the test score that the paper's protocol selects on
    (mean of its six metrics; solid) and the validation headline that bench selects on (dashed)."""
    tables = _epoch_tables(board)
    if not tables:
        return None
    fig, axes = _grid(len(tables), ncols=2)
    for ax, (name, frames) in zip(axes, tables.items()):
        for i, frame in enumerate(frames):
            color, seed = f"C{i % 10}", frame["seed"].iloc[0]
            if "test_score" in frame:
                ax.plot(frame["epoch"], frame["test_score"], "-", color=color, label=f"seed {seed} test, paper mean")
            if "val_score" in frame:
                ax.plot(frame["epoch"], frame["val_score"], "--", color=color, alpha=0.7, label=f"seed {seed} val, headline")
                chosen = frame.loc[frame["val_score"].idxmax()]
                if "test_score" in frame:
                    ax.plot(chosen["epoch"], chosen["test_score"], "*", color=color, ms=11, mec="k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Per-epoch scores (solid: test, dashed: validation, star: validation-selected epoch)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def seconds_chart(board: Board, path: Path) -> Path | None:
    """Left: median training seconds per epoch of trainable predictors; right: total fit seconds of
    every predictor (log scale), each as the mean over seeds with seeds as dots."""
    ok = board.ok()
    names = [n for n in board.predictors if any(r["predictor"] == n for r in ok)]
    if not names:
        return None
    panels = [
        ("seconds per epoch (trainable)", "seconds_per_epoch", [n for n in names if any(r.get("seconds_per_epoch") for r in ok if r["predictor"] == n)]),
        ("fit seconds (log scale)", "fit_seconds", [n for n in names if any(r.get("fit_seconds") is not None for r in ok if r["predictor"] == n)]),
    ]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 0.9 + 0.35 * len(names)), squeeze=False)
    for ax, (title, key, chosen) in zip(axes.flat, panels):
        vals = [np.array([r[key] for r in ok if r["predictor"] == n and r.get(key) is not None], dtype=float) for n in chosen]
        y = np.arange(len(chosen))
        bars = ax.barh(y, [v.mean() for v in vals], color=[f"C{names.index(n) % 10}" for n in chosen], alpha=0.85)
        ax.bar_label(bars, labels=[f"{v.mean():.3g}" for v in vals], fontsize=7, padding=2)
        for i, v in enumerate(vals):
            ax.plot(v, np.full(v.size, y[i]), "k.", ms=4)
        if key == "fit_seconds":
            ax.set_xscale("log")
        ax.set_yticks(y, chosen, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def split_plots(board: Board, folder: Path) -> dict[str, Path]:
    """Every plot of one split, written into `folder`; title -> path (plots with no data are left out)."""
    groups = column_groups(board.metrics)
    made = {
        "Paper metrics per predictor (validation-selected epoch)":
            metric_bars(board, groups["paper"], folder / f"{board.split}_paper_metrics.png", "Paper metrics (validation-selected epoch), mean ± sd over seeds"),
        "Metrics beyond the paper (validation-selected epoch)":
            metric_bars(board, groups["beyond"], folder / f"{board.split}_beyond_metrics.png", "Metrics beyond the paper (validation-selected epoch)"),
        "Calibrated scores (validation-selected epoch)":
            metric_bars(board, groups["norm"], folder / f"{board.split}_norm_metrics.png", "Calibrated scores: 0 = the real controls, 1 = best value"),
        "Per-epoch test and validation scores": epoch_curves(board, folder / f"{board.split}_epochs.png"),
        "Training time": seconds_chart(board, folder / f"{board.split}_seconds.png"),
    }
    return {title: p for title, p in made.items() if p is not None}
