"""What publishing and plotting read: run folders grouped per split (`Board`), and how a result
column is classified (direction, reference rows, column groups). Shared by bench/publish.py and
bench/plots.py, which depend on this module and never on each other in the other direction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.headline import CLUSTER, KEYS, RUN, SEED
from bench.io import safe_name
from bench.record import (
    HEADLINE_COLUMNS,
    NORM_SUFFIX,
    OK,
    REPLICATE_NORM_SUFFIX,
    RESULT_FILE,
    SELECTIONS,
    VAL_SELECTED,
    read_json,
    read_record,
)
from bench.schema import DRUG, PAPER_METRICS
from metrics import METRICS

REFERENCE_NAMES = {"oracle"}  # bounds, never "best"; a result's own `reference` flag also counts


@dataclass(eq=False)
class Board:
    """Everything published about one split: its run folders' metadata and every run's result.
    Compared and hashed by identity, so aggregates of a board can be memoised while it lives."""

    split: str  # the page's name: the split, with its split seed when that is not 0
    metas: list[dict] = field(default_factory=list)  # run.json of each run folder, with "run_dir"
    results: list[dict] = field(default_factory=list)  # result.json of each run, with "run_path"

    @property
    def predictors(self) -> list[str]:
        """Predictor names in registry order (run.json 'predictors'), then any others found."""
        names = [n for m in self.metas for n in m.get("predictors", [])]
        return list(dict.fromkeys(names + [r["predictor"] for r in self.results]))

    @property
    def metrics(self) -> list[str]:
        """Metric columns present in the results: raw metrics (registry order first, then unknown
        ones as found), then calibrated `<metric>_norm` scores in the same order. Replicate
        references and the headline are kept apart (`reference_columns`, `HEADLINE_COLUMNS`)."""
        found = [k for k in dict.fromkeys(k for r in self.results for s in SELECTIONS for k in r.get(s) or {})
                 if k not in HEADLINE_COLUMNS and not k.endswith(REPLICATE_NORM_SUFFIX)]
        raw = [m for m in METRICS if m in found] + [m for m in found if m not in METRICS and not m.endswith(NORM_SUFFIX)]
        norms = [m for m in found if m.endswith(NORM_SUFFIX) and m not in METRICS]
        base = {m: m.removesuffix(NORM_SUFFIX) for m in norms}
        return raw + sorted(norms, key=lambda m: raw.index(base[m]) if base[m] in raw else len(raw))

    @property
    def reference_columns(self) -> list[str]:
        """Replicate references of calibrated scores present in the results (`<metric>_replicate_norm`)."""
        return [k for k in dict.fromkeys(k for r in self.results for s in SELECTIONS for k in r.get(s) or {})
                if k.endswith(REPLICATE_NORM_SUFFIX)]

    @property
    def meta(self) -> dict:
        return self.metas[0] if self.metas else {}

    @property
    def base(self) -> str:
        """The board's name without its split seed and fold: boards sharing it are pooled."""
        return re.sub(r"(-seed\d+)?(-fold\d+)?$", "", self.split)

    @property
    def split_seed(self) -> int:
        return int((self.meta.get("split_summary") or {}).get("seed") or 0)

    @property
    def fold(self) -> int | None:
        """Which fold of a K-fold hold-out this board tests (None: a single hold-out)."""
        fold = (self.meta.get("split_summary") or {}).get("fold")
        return None if fold is None else int(fold)

    @property
    def label(self) -> str:
        """'split seed 1', 'fold 2 of 5' or both: what tells this board from its pooled siblings."""
        summary = self.meta.get("split_summary") or {}
        parts = [f"split seed {self.split_seed}"] if self.split_seed or self.fold is None else []
        if self.fold is not None:
            parts.append(f"fold {self.fold + 1} of {summary.get('folds')}")
        return ", ".join(parts)

    @property
    def clusters(self) -> dict[str, str] | None:
        """drug -> cluster of related drugs, as `bench run` recorded it in run.json (`drug_clusters`);
        None for run folders written before it did."""
        recorded = [m["drug_clusters"] for m in self.metas if m.get("drug_clusters")]
        return {d: c for clusters in recorded for d, c in clusters.items()} if recorded else None

    def ok(self) -> list[dict]:
        return [r for r in self.results if r["status"] == OK]


def data_tag(meta: dict) -> str:
    """A file-name-safe label of a run folder's data set ('synthetic-default-realistic-seed-0')."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str((meta.get("data") or {}).get("name", "data"))).strip("-").lower()


def board_name(meta: dict, split: str) -> str:
    """`<split>`, with `-seed<s>` for a split seed other than 0 and `-fold<k>` for fold k of a K-fold."""
    summary = meta.get("split_summary") or {}
    seed, fold = int(summary.get("seed") or 0), summary.get("fold")
    return split + (f"-seed{seed}" if seed else "") + (f"-fold{fold}" if fold is not None else "")


def load_boards(run_dirs: list[Path]) -> dict[str, Board]:
    """Read run folders and group their results by data set, split, split seed and fold: one board
    each (named by `board_name`), prefixed `<data tag>_` when the folders hold more than one data
    set (e.g. two generator presets). Runs of one board must share their data and hold-out."""
    folders = []
    for run_dir in map(Path, run_dirs):
        paths = sorted(run_dir.glob(f"runs/*/seed*/{RESULT_FILE}"))
        if not paths:
            raise BenchError(f"{run_dir}: no run results found (expected runs/*/seed*/{RESULT_FILE})")
        meta = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
        if not isinstance(meta, dict):
            raise BenchError(f"{run_dir / 'run.json'}: a JSON {type(meta).__name__}, expected an object as bench run writes")
        folders.append((run_dir, meta, [{**read_record(p).to_json(), "run_path": str(p.parent)} for p in paths]))
    several = len({data_tag(meta) for _, meta, _ in folders}) > 1
    boards: dict[str, Board] = {}
    for run_dir, meta, results in folders:
        source = run_dir / "run.json" if meta.get("split") else Path(results[0]["run_path"]) / RESULT_FILE
        split = safe_name(board_name(meta, meta.get("split") or results[0]["split"]), "split name", source)  # becomes file names
        split = f"{data_tag(meta)}_{split}" if several else split
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
    """Direction of a metric column: from the registry; calibrated `<name>_norm` scores (0 = the real
    controls, 1 = best value) and the headline are higher-better; None for a column the registry
    does not know."""
    if metric in METRICS:
        return METRICS[metric].higher_is_better
    if metric.endswith(NORM_SUFFIX) or metric == "headline":
        return True
    return None


def is_reference(result: dict) -> bool:
    return bool(result.get("reference")) or result["predictor"] in REFERENCE_NAMES


def column_groups(metrics: list[str]) -> dict[str, list[str]]:
    """The paper's six metrics, the other raw metrics, and the normalised scores, in that order."""
    return {
        "paper": [m for m in PAPER_METRICS if m in metrics],
        "beyond": [m for m in metrics if m not in PAPER_METRICS and not m.endswith(NORM_SUFFIX)],
        "norm": [m for m in metrics if m.endswith(NORM_SUFFIX)],
    }


@lru_cache(maxsize=256)
def _read_conditions(path: str, stamp: tuple[int, int]) -> pd.DataFrame:
    """A run's conditions.csv, read once per version of the file (`stamp`: its mtime and size):
    publishing aggregates the same runs for many tables."""
    return pd.read_csv(path)


def seed_conditions(board: Board, predictor: str, selection: str = VAL_SELECTED) -> pd.DataFrame:
    """Per test condition and model seed (`seed` column), every score and reference column of
    `predictor` at the selected epoch."""
    frames = []
    for r in board.ok():
        path = Path(r.get("run_path", "")) / "conditions.csv"
        if r["predictor"] != predictor or not path.exists():
            continue
        stat = path.stat()
        frame = _read_conditions(str(path), (stat.st_mtime_ns, stat.st_size))
        if "selection" in frame:
            frames.append(frame[frame["selection"] == selection].drop(columns=["selection", "epoch"]).assign(**{SEED: r["seed"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pooled_conditions(board: Board, predictor: str, selection: str = VAL_SELECTED, seed: int | None = None) -> pd.DataFrame:
    """Per test condition, every score and reference column of `predictor` at the selected epoch,
    averaged over its seeds (or of model seed `seed` only; references are the same for every seed)."""
    frame = seed_conditions(board, predictor, selection)
    if seed is not None and not frame.empty:
        frame = frame[frame[SEED] == seed]
    if frame.empty:
        return pd.DataFrame()
    return frame.drop(columns=[SEED]).groupby(KEYS, as_index=False).mean(numeric_only=True)


def across(boards: list[Board], predictor: str, seed: int | None = None, by_seed: bool = False) -> pd.DataFrame:
    """`pooled_conditions` of several boards (folds, split seeds) stacked, with each drug's cluster of
    related drugs (`cluster`: run.json's `drug_clusters`; the drug itself for folders without them). A
    drug held out under two split seeds is two drugs of one cluster (the folds of one split seed hold
    out disjoint drugs). `by_seed`: one row per condition and model seed instead, with the board's
    position as `run` (the bootstrap draws each run's seeds)."""
    frames = []
    relabel = len({b.split_seed for b in boards}) > 1
    for run, board in enumerate(boards):
        frame = seed_conditions(board, predictor).assign(**{RUN: run}) if by_seed else pooled_conditions(board, predictor, seed=seed)
        if frame.empty:
            continue
        drugs = frame[DRUG].astype(str)
        frame = frame.assign(**{CLUSTER: drugs.map(board.clusters or {}).fillna(drugs)})
        if relabel:
            frame = frame.assign(**{DRUG: drugs + f" (split seed {board.split_seed})"})
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
