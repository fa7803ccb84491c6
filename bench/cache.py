"""Run keys and the finished-run cache: a run is keyed by a hash of its configuration and of its
input data, and a finished run with the same key in the run folder is reused, never recomputed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.data.benchmark import Benchmark
from bench.fingerprint import adata_fingerprint, config_hash
from splits import Split


def data_fingerprints(bench: Benchmark) -> dict[str, str | None]:
    """Content hashes of the single-cell and bulk sets (computed once per sweep)."""
    return {"sc": adata_fingerprint(bench.sc), "bulk": adata_fingerprint(bench.bulk) if bench.bulk is not None else None}


def split_fingerprint(split: Split) -> dict:
    """Name, seed and a hash of the per-cell labels of a split."""
    h = hashlib.sha256()
    h.update("\0".join(map(str, split.labels.index)).encode())
    h.update("\0".join(map(str, split.labels.to_numpy())).encode())
    return {"name": split.name, "seed": split.seed, "labels": h.hexdigest()[:16]}


def run_key(predictor: str, options: dict, split: dict, seed: int, max_epochs: int | None, metrics: list[str],
            data: dict) -> str:
    """The cache key of one (predictor, split, seed) run: everything its numbers depend on."""
    return config_hash({
        "predictor": predictor, "options": options, "split": split, "seed": seed,
        "max_epochs": max_epochs, "metrics": sorted(metrics), "data": data,
    })


def run_dir(out_dir: Path, predictor: str, seed: int) -> Path:
    """Where one run's files live: OUT/runs/<predictor>/seed<k>/."""
    return Path(out_dir) / "runs" / predictor / f"seed{seed}"


def finished(out_dir: Path, predictor: str, seed: int, key: str) -> dict | None:
    """The saved result of a successful run with this key, or None (absent, other key, failed or
    skipped: those are computed again)."""
    path = run_dir(out_dir, predictor, seed) / "result.json"
    try:
        result = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return result if result.get("run_key") == key and result.get("status") == "ok" else None
