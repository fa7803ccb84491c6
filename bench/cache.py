"""Run keys and the finished-run cache: a run is keyed by a hash of its configuration and of its
input data, and a finished run with the same key in the run folder is reused, never recomputed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.data.benchmark import Benchmark
from bench.errors import BenchError
from bench.fingerprint import adata_fingerprint, config_hash, package_versions
from bench.record import OK, RESULT_FILE, RunRecord, read_record
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


# How runs are scored: bump on any change to a metric, the sampling or input rules, calibration or
# the references, so finished runs scored the old way are recomputed, never reused.
#   1: (implicit) every predicted set sampled to the truth's size; inputs sized by the true counts
#   2: inputs sized from training conditions only; the paper's six and mean-based metrics on every
#      predicted cell (sets capped at the input size); replicate DE genes from its truth half only
#   3: 0 = the mean baseline (`train_mean`); DE genes per condition, significant only (Wilcoxon FDR <
#      0.05), none for inert conditions, which DE-set metrics skip; `de_recall` from the predicted mean
#      change; unbiased energy distances; every prediction clipped at 0 on non-negative data
SCORING_VERSION = 3


def run_key(predictor: str, options: dict, split: dict, seed: int, max_epochs: int | None, metrics: list[str],
            data: dict) -> str:
    """The cache key of one (predictor, split, seed) run: everything its numbers depend on, the
    scoring version and the versions of the packages that compute it included."""
    return config_hash({
        "predictor": predictor, "options": options, "split": split, "seed": seed,
        "max_epochs": max_epochs, "metrics": sorted(metrics), "data": data, "scoring": SCORING_VERSION,
        "versions": package_versions(),
    })


def run_dir(out_dir: Path, predictor: str, seed: int) -> Path:
    """Where one run's files live: OUT/runs/<predictor>/seed<k>/."""
    return Path(out_dir) / "runs" / predictor / f"seed{seed}"


def _saved(out_dir: Path, predictor: str, seed: int) -> RunRecord | None:
    """The saved record of a run, or None when there is none or it cannot be read (computed again)."""
    try:
        return read_record(run_dir(out_dir, predictor, seed) / RESULT_FILE)
    except (FileNotFoundError, BenchError):
        return None


def finished(out_dir: Path, predictor: str, seed: int, key: str) -> dict | None:
    """The saved result (as result.json holds it) of a successful run with this key, or None (absent,
    other key, failed or skipped: those are computed again)."""
    record = _saved(out_dir, predictor, seed)
    return record.to_json() if record is not None and record.run_key == key and record.status == OK else None


def stale_reason(out_dir: Path, predictor: str, seed: int, key: str) -> str | None:
    """Why a saved successful run is not reused ('it was scored under scoring version 1, now 2', 'it
    was computed under torch 2.5.1, now 2.6.0', or 'its configuration or data changed'); None when
    there is none or it is reused."""
    record = _saved(out_dir, predictor, seed)
    if record is None or record.status != OK or record.run_key == key:
        return None
    version = 1 if record.scoring_version is None else record.scoring_version
    if version != SCORING_VERSION:
        return f"it was scored under scoring version {version}, now {SCORING_VERSION}"
    if record.versions is None:
        return "its configuration or data changed, or the packages that compute it (its record does not say which)"
    now = package_versions()
    changed = [f"{p} {record.versions.get(p, 'absent')}, now {now.get(p, 'absent')}"
               for p in sorted(set(record.versions) | set(now)) if record.versions.get(p) != now.get(p)]
    return f"it was computed under {'; '.join(changed)}" if changed else "its configuration or data changed"
