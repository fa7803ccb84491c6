"""`bench pretrain`: PertBERT bulk pre-training in the paper's three Table 1 settings, metrics on
held-out conditions (every replicate of a held-out (cell line, drug, dose) is left out of training);
the table's columns and markdown: bench/table1.py."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from bench.commands.data import add_data_arguments, load_benchmark
from bench.errors import BenchError
from bench.io import atomic_write_csv, check_writable_file
from bench.schema import CELL_TYPE, DRUG
from bench.table1 import COLUMNS, METRICS, UNITS, markdown
from predictors.pertbert.pretrain import pretrained
from predictors.pertbert.settings import STAGES, TABLE1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pre-train PertBERT on the bulk set; print the Table 1 metrics")
    p.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the predictors' default)")
    p.add_argument("--stages", type=int, default=1, choices=STAGES,
                   help="four-task pre-training in 1 stage (all tasks throughout) or 2 (masking alone for the first "
                        "half of the epochs, then the four tasks, as in the paper); one-task rows have one (default: 1)")
    p.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"), help="checkpoint cache (default: ./.bench-cache)")
    p.add_argument("--out", type=Path, default=None, help="also write the table as CSV here")
    add_data_arguments(p)
    p.set_defaults(func=run)


def table1(bench, cache_dir: Path, epochs: int | None = None, stages: int = 1) -> pd.DataFrame:
    """One row per Table 1 setting, metrics on held-out bulk conditions (cached checkpoints reused);
    `stages` applies to the four-task setting."""
    if bench.bulk is None:
        raise BenchError("bench pretrain needs a bulk data set")
    cell_types = sorted(set(bench.sc.obs[CELL_TYPE].astype(str)))
    drugs = sorted(set(bench.sc.obs[DRUG].astype(str)) - {bench.control})
    rows = []
    for setting in tqdm(TABLE1.values(), desc="pre-training", unit="setting"):
        if epochs is not None:
            setting = replace(setting, epochs=epochs)
        setting = setting.with_stages(stages)
        model = pretrained(cache_dir, bench.bulk, setting, cell_types, drugs, control=bench.control)
        m = model.metrics
        rows.append({
            "methods": "four-task" if setting.four_task else "one-task",
            "mask_percentage": round(100 * setting.mask),
            "dataset": setting.data,
            "stages": setting.stages,
            **{k: m.get(k) for k in METRICS},
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def run(args: argparse.Namespace) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise BenchError(f"--epochs {args.epochs}: expected a positive integer")
    if args.out is not None:
        check_writable_file(args.out)
    bench = load_benchmark(args)
    frame = table1(bench, args.cache_dir, args.epochs, args.stages)
    print(markdown(frame))
    print(UNITS, file=sys.stderr)
    if args.out is not None:
        command = "bench " + shlex.join(getattr(args, "argv", []))
        atomic_write_csv(args.out, frame.assign(data=bench.name, command=command))
    return 0
