"""`bench data`: write the benchmark's data sets as h5ad files; the data options shared by commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.data.benchmark import Benchmark, load_default
from bench.data.counts import NORMALIZE_CHOICES
from bench.data.doses import NM_PER_UNIT
from bench.data.load import load_files
from bench.data.loaders import ObsKeys
from bench.data.synthetic import PRESETS, SIZES
from bench.data.synthetic_stats import summary
from bench.errors import BenchError
from bench.io import atomic_write_h5ad, check_writable, folder_lock, writable_dir
from bench.schema import CONTROL


def add_data_arguments(p: argparse.ArgumentParser, embedded: bool = True) -> None:
    """The data options: the embedded benchmark's (`embedded`) and those of the user's own files."""
    if embedded:
        g = p.add_argument_group("data (default: the embedded generated benchmark)")
        g.add_argument("--data", default="default", choices=sorted(SIZES),
                       help="embedded data size: default, smoke (tiny, for tests) or full (sci-Plex3/LINCS shape) (default: default)")
        g.add_argument("--preset", default=None, choices=PRESETS,
                       help="embedded data model: easy (bulk mirrors single cell) or realistic (sci-Plex3/L1000-like; "
                            "see docs/data.md) (default: realistic; easy for --data smoke)")
        g.add_argument("--data-seed", type=int, default=0, help="seed of the embedded data generator (default: 0)")
    else:
        g = p.add_argument_group("data files")
        p.set_defaults(data="default", preset=None, data_seed=0)
    g.add_argument("--sc", type=Path, default=None,
                   help="single-cell h5ad (sci-Plex3 as scPerturb or CPA/chemCPA publish it, or `bench prepare` output)")
    g.add_argument("--bulk", type=Path, default=None, help="bulk set: LINCS h5ad, L1000 .gct or .gctx (side-cars beside it)")
    g.add_argument("--drug-key", default=None, help="single-cell obs column of the drug (default: the first of drug, condition, pert_iname, perturbation)")
    g.add_argument("--cell-type-key", default=None, help="single-cell obs column of the cell type (default: cell_type)")
    g.add_argument("--dose-key", default=None,
                   help="single-cell obs column of the dose (default: dose, pert_dose, dose_val or dose_value, with its unit "
                        "column dose_unit/pert_dose_unit where present); none: one dose per drug")
    g.add_argument("--dose-unit", default=None, choices=list(NM_PER_UNIT),
                   help="unit of plain dose numbers (default: nM; dose_val is x10,000 nM, pert_dose µM); "
                        "doses written with a unit ('10 µM') keep their own")
    g.add_argument("--control", default=CONTROL, help=f"drug label of control cells (default: {CONTROL}; DMSO/vehicle detected)")
    g.add_argument("--normalize", default="auto", choices=NORMALIZE_CHOICES,
                   help="auto: raw integer counts in --sc are normalised per cell to 10,000 then log1p (as scanpy); "
                        "none: refuse raw counts (default: auto)")
    g.add_argument("--smiles", type=Path, action="append", default=[], metavar="CSV",
                   help="table of 'drug name or pert_id,SMILES' rows attached as obs 'smiles' (repeatable)")


def load_benchmark(args: argparse.Namespace) -> Benchmark:
    """The data set the data options name: the embedded benchmark, or the files given with --sc
    (and --bulk), validated (`bench.data.load.load_files`)."""
    if args.sc is None:
        if args.bulk is not None or args.smiles:
            raise BenchError("--bulk and --smiles need --sc: they apply to your own files, not the embedded set")
        return load_default(args.data, args.data_seed, args.preset)
    if args.preset is not None:
        raise BenchError("--preset chooses the embedded data's model: it does not apply to --sc files")
    keys = ObsKeys(args.drug_key, args.cell_type_key, args.dose_key, args.control, args.dose_unit)
    return load_files(args.sc, args.bulk, keys=keys, normalize=args.normalize, smiles=args.smiles)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write the data sets as h5ad files (sc.h5ad, bulk.h5ad)")
    p.add_argument("--out", type=Path, default=Path("bench-data"), help="output folder (default: ./bench-data)")
    p.add_argument("--stats", action="store_true",
                   help="print the data set's shape statistics (docs/data.md's presets table: cells per condition, "
                        "zero fraction, controls, bulk replicates, plates and doses; the model's with generated data) "
                        "instead of writing it")
    add_data_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.stats:
        check_writable(args.out)
    bench = load_benchmark(args)
    if args.stats:
        print_stats(bench)
        return 0
    with folder_lock(writable_dir(args.out)):
        for role, adata in (("sc", bench.sc), ("bulk", bench.bulk)):
            if adata is None:
                continue
            path = args.out / f"{role}.h5ad"
            atomic_write_h5ad(path, adata)
            print(f"wrote {path} ({adata.n_obs} x {adata.n_vars})")
    return 0


def print_stats(bench: Benchmark) -> None:
    """One line per statistic of `bench.data.synthetic_stats.summary`, to compare a data set with the presets table."""
    print(f"{bench.name}: shape statistics (docs/data.md, the presets table)")
    for name, value in summary(bench.sc, bench.bulk, bench.control).items():
        print(f"  {name:<32} {value:,.3f}")
