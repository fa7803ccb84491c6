"""Peak memory of one run in a pool process, per predictor (not a test: pytest does not collect this
file). The measurements behind each predictor's `memory` (predictors/base.py) and the pool's choice
of workers (docs/statistics.md#memory-and-the-pool).

For each data shape, generates the data in this process, then computes each predictor's run (seed
0, `unseen_drugs` or `--split`, split seed 0) in a fresh spawned process exactly as the pool does (the data
sent once, evaluators built there, the run fitted, predicted and scored) with one thread, and reads
that process's peak resident memory (VmHWM). A fresh process that imported bench, torch and
every predictor module but received no data gives the floor. Each predictor gets a fresh checkpoint
cache, so the pre-trained PertBERT variants pre-train (for `--pretrain-epochs`). Rows are appended
to a CSV as runs end; `--fit` reads such CSVs and prints each predictor's base and factor:

    python tests/bench_worker_memory.py --shape default --out memory.csv [--predictors all] [--epochs 2]
    python tests/bench_worker_memory.py --shape fifth --out memory.csv     # full's genes and drugs, a fifth of its cells and bulk
    python tests/bench_worker_memory.py --fit memory.csv

The data's bytes are `Benchmark.dense_bytes` (the single-cell matrix as dense plus
the bulk matrix). A predictor's factor is the slope between the peaks of its two largest shapes, its
base the least that keeps base + factor x bytes at or above every peak measured, both rounded up.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

GIB = 1 << 30
SHAPES = ("smoke", "default", "fifth", "full")
FIELDS = ["shape", "split", "predictor", "class", "cells", "genes", "bulk_profiles", "data_bytes", "peak_bytes", "status", "seconds"]


def _peak_bytes() -> int:
    """This process's peak resident memory: VmHWM, the high-water mark of its own address space.
    Not `ru_maxrss`: a spawned process's starts at its parent's resident memory at the fork (Linux
    keeps the pre-exec high-water mark), so a process that stays smaller than the parent that
    spawned it would read the parent's."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this measurement needs Linux")


def _peak_of_a_run(sweep, job) -> tuple[str, str | None, int]:
    """In the pool process: compute the run, return its status, error and this process's peak."""
    from bench.runner import execute

    output = execute(sweep, job)
    return output.record.status, output.record.error, _peak_bytes()


def _peak_of_the_floor(_shared, _job) -> int:
    """In a fresh pool process: every predictor module imported, no data."""
    import torch  # noqa: F401

    from predictors import registry

    for name in registry.predictor_names():
        try:
            registry.predictor_class(name)
        except Exception:  # noqa: BLE001  a predictor whose package is missing
            pass
    return _peak_bytes()


def load(shape: str):
    """The realistic-preset benchmark of `shape`; `fifth`: full's genes, drugs and doses with a fifth
    of its cells per condition, controls and bulk drugs."""
    from bench.data import load_default, synthetic

    if shape == "fifth":
        full = synthetic.SIZES["full"]
        synthetic.SIZES["fifth"] = replace(full, cells_per_condition=full.cells_per_condition // 5,
                                           controls_per_cell_line=full.controls_per_cell_line // 5,
                                           n_bulk_drugs=full.n_bulk_drugs // 5)
    return load_default(shape, 0, "realistic")


def measure(shape: str, split_name: str, names: list[str], epochs: int, pretrain_epochs: int, out: Path) -> None:
    from bench.executors import PoolExecutor
    from bench.runner import RunConfig, Sweep, plan
    from predictors import registry
    from splits import benchmark_split

    os.environ.update({name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    done = set()
    if out.exists():
        with out.open() as fh:
            done = {(r["shape"], r["predictor"]) for r in csv.DictReader(fh) if r["status"] == "ok"}
    new = not out.exists()
    t0 = time.perf_counter()
    bench = load(shape)
    split = benchmark_split(bench, split_name, 0)
    size = bench.dense_bytes
    print(f"{shape}: {bench.sc.n_obs} cells x {bench.sc.n_vars} genes, bulk {bench.bulk.n_obs} x {bench.bulk.n_vars}, "
          f"{size / GIB:.3f} GiB of data, generated in {time.perf_counter() - t0:.0f} s", flush=True)
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        row = {"shape": shape, "split": split_name, "cells": bench.sc.n_obs, "genes": bench.sc.n_vars, "bulk_profiles": bench.bulk.n_obs,
               "data_bytes": size}
        if (shape, "(floor)") not in done:
            [(_, floor)] = list(PoolExecutor(1).map(_peak_of_the_floor, None, [0], lambda j: {}))
            writer.writerow({**row, "predictor": "(floor)", "class": "", "peak_bytes": floor, "status": "ok", "seconds": 0})
            fh.flush()
        for name in names:
            if (shape, name) in done:
                continue
            cls, _ = registry.predictor_class(name)
            cache = Path(tempfile.mkdtemp(prefix="bench-memory-cache."))
            overrides = {name: {"pretrain_epochs": pretrain_epochs}} if "pretrain_epochs" in cls.defaults else {}
            config = RunConfig(predictors=[name], split=split_name, max_epochs=epochs, cache_dir=cache, overrides=overrides)
            [job] = plan(bench, split, config)
            start = time.perf_counter()
            try:
                [(_, result)] = list(PoolExecutor(1).map(_peak_of_a_run, Sweep(bench, split, config), [job], lambda j: {}))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            status, error, peak = result if not isinstance(result, BaseException) else ("died", str(result), 0)
            seconds = time.perf_counter() - start
            writer.writerow({**row, "predictor": name, "class": cls.__qualname__, "peak_bytes": peak, "status": status,
                             "seconds": round(seconds)})
            fh.flush()
            print(f"{shape} {name}: {status} {peak / GIB:.2f} GiB in {seconds:.0f} s" + (f" ({error})" if error else ""),
                  flush=True)


def fit(paths: list[Path]) -> None:
    """Each predictor's base and factor, as a markdown table: the factor is the slope between its two
    largest data's peaks (memory matters at large data), the base the least that keeps the line at
    or above every measured peak; both rounded up to 0.05."""
    rows = [r for path in paths for r in csv.DictReader(path.open())]
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            by.setdefault(r["predictor"], []).append(r)
    shapes = sorted({r["shape"] for r in rows}, key=SHAPES.index)
    sizes = {r["shape"]: int(r["data_bytes"]) / GIB for r in rows}
    print("data (GiB): " + ", ".join(f"{s} {sizes[s]:.3f}" for s in shapes))
    print("| predictor | " + " | ".join(f"{s} (GiB)" for s in shapes) + " | base (GiB) | factor |")
    print("|---|" + "---|" * (len(shapes) + 2))
    for name, points in by.items():
        xy = sorted((int(p["data_bytes"]) / GIB, int(p["peak_bytes"]) / GIB) for p in points)
        peaks = {p["shape"]: int(p["peak_bytes"]) / GIB for p in points}
        cells = " | ".join(f"{peaks[s]:.2f}" if s in peaks else "-" for s in shapes)
        if len(xy) < 2:
            print(f"| {name} | {cells} | - | - |")
            continue
        (x0, y0), (x1, y1) = xy[-2:]
        factor = math.ceil(max(0.0, (y1 - y0) / (x1 - x0)) * 20) / 20
        base = math.ceil(max(y - factor * x for x, y in xy) * 20) / 20
        print(f"| {name} | {cells} | {base:.2f} | {factor:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=SHAPES, default="default")
    p.add_argument("--predictors", default="all")
    p.add_argument("--split", default="unseen_drugs", help="the split, seed 0 (scGen runs under unseen_drug_cell_line only)")
    p.add_argument("--epochs", type=int, default=2, help="epoch budget of the trainable predictors (default: 2)")
    p.add_argument("--pretrain-epochs", type=int, default=1, help="PertBERT's bulk pre-training epochs (default: 1)")
    p.add_argument("--out", type=Path, default=Path("memory.csv"), help="CSV the rows are appended to; rows in it are skipped")
    p.add_argument("--fit", type=Path, nargs="+", help="print the base and factor of each predictor from these CSVs")
    args = p.parse_args(argv)
    if args.fit:
        fit(args.fit)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from predictors import registry

    measure(args.shape, args.split, registry.resolve(args.predictors), args.epochs, args.pretrain_epochs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
