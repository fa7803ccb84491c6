"""`bench data`: write the embedded benchmark out as h5ad files; shared data options for other commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.data.benchmark import Benchmark, load_default
from bench.data.synthetic import SIZES
from bench.io import atomic_write_h5ad


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="default", choices=sorted(SIZES), help="embedded data size (default: default)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the embedded data generator (default: 0)")


def load_benchmark(args: argparse.Namespace) -> Benchmark:
    return load_default(args.data, args.data_seed)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write the embedded data sets as h5ad files (sc.h5ad, bulk.h5ad)")
    p.add_argument("--out", type=Path, default=Path("bench-data"), help="output folder (default: ./bench-data)")
    add_data_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bench = load_benchmark(args)
    for role, adata in (("sc", bench.sc), ("bulk", bench.bulk)):
        path = args.out / f"{role}.h5ad"
        atomic_write_h5ad(path, adata)
        print(f"wrote {path} ({adata.n_obs} x {adata.n_vars})")
    return 0
