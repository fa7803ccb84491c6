"""`bench data`: write the benchmark's data sets as h5ad files; the data options shared by commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench.data.benchmark import Benchmark, load_default
from bench.data.counts import NORMALIZE_CHOICES
from bench.data.doses import NM_PER_UNIT
from bench.data.synthetic import PRESETS, SIZES
from bench.errors import BenchError
from bench.io import atomic_write_h5ad
from bench.schema import CONTROL, DRUG


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (default: the embedded generated benchmark)")
    g.add_argument("--data", default="default", choices=sorted(SIZES),
                   help="embedded data size: default, smoke (tiny, for tests) or full (sci-Plex3/LINCS shape) (default: default)")
    g.add_argument("--preset", default=None, choices=PRESETS,
                   help="embedded data model: easy (bulk mirrors single cell) or realistic (sci-Plex3/L1000-like; "
                        "see docs/data.md) (default: realistic; easy for --data smoke)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the embedded data generator (default: 0)")
    g.add_argument("--sc", type=Path, default=None,
                   help="single-cell h5ad (sci-Plex3 as scPerturb or CPA/chemCPA publish it, or `bench prepare` output)")
    g.add_argument("--bulk", type=Path, default=None, help="bulk set: LINCS h5ad, L1000 .gct or .gctx (side-cars beside it)")
    g.add_argument("--drug-key", default=None, help="single-cell obs column of the drug (default: drug, else condition)")
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
    """The embedded benchmark, or the files given with --sc (and --bulk), validated; what reading
    changed (normalisation, merged genes, drug names matched) is said on stderr."""
    if args.sc is None:
        if args.bulk is not None or args.smiles:
            raise BenchError("--bulk and --smiles need --sc: they apply to your own files, not the embedded set")
        return load_default(args.data, args.data_seed, args.preset)
    if args.preset is not None:
        raise BenchError("--preset chooses the embedded data's model: it does not apply to --sc files")
    from bench.data.drugs import align_drug_names, attach_smiles, read_smiles_table
    from bench.data.loaders import LOAD_UNS_KEY, ObsKeys, load_bulk, load_notes, load_single_cell
    from bench.data.validate import check_shared_genes

    keys = ObsKeys(args.drug_key, args.cell_type_key, args.dose_key, args.control, args.dose_unit)
    sc = load_single_cell(args.sc, keys, normalize=args.normalize)
    for line in load_notes(sc):
        print(f"note: {line}", file=sys.stderr)
    bulk = load_bulk(args.bulk, ObsKeys(control=args.control)) if args.bulk is not None else None
    if args.smiles:
        table = {k: v for path in args.smiles for k, v in read_smiles_table(path).items()}
        for role, adata in (("single-cell", sc), ("bulk", bulk)):
            if adata is not None:
                print(f"smiles: {attach_smiles(adata, table, args.control)} {role} drug(s) without a SMILES", file=sys.stderr)
    if bulk is not None:
        shared = check_shared_genes(sc, bulk, str(args.sc), str(args.bulk))
        level = "warning: few" if shared < 100 else "shared"
        print(f"genes: {shared} {level} gene symbols between {args.sc.name} ({sc.n_vars}) and {args.bulk.name} ({bulk.n_vars})", file=sys.stderr)
        found = align_drug_names(sc, bulk, args.control)
        bulk.uns[LOAD_UNS_KEY]["drug_matches"] = {d: list(m) for d, m in found.items()}
        n_drugs = len(set(sc.obs[DRUG].astype(str)) - {args.control})
        ways = pd.Series([how for _, how in found.values()]).value_counts()
        how = ", ".join(f"{n} by {w}" for w, n in ways.items())
        print(f"drugs: {len(found)} of {n_drugs} single-cell drugs have bulk profiles in {args.bulk.name}"
              + (f" (matched {how})" if how else "") + "; only these are held out by the unseen-drug splits", file=sys.stderr)
    name = args.sc.name + (f" + {args.bulk.name}" if bulk is not None else "")
    return Benchmark(sc=sc, bulk=bulk, name=name, control=args.control, meta={"sc": str(args.sc), "bulk": str(args.bulk)})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write the data sets as h5ad files (sc.h5ad, bulk.h5ad)")
    p.add_argument("--out", type=Path, default=Path("bench-data"), help="output folder (default: ./bench-data)")
    add_data_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bench = load_benchmark(args)
    for role, adata in (("sc", bench.sc), ("bulk", bench.bulk)):
        if adata is None:
            continue
        path = args.out / f"{role}.h5ad"
        atomic_write_h5ad(path, adata)
        print(f"wrote {path} ({adata.n_obs} x {adata.n_vars})")
    return 0
