"""`bench prepare`: a downloaded single-cell h5ad and a bulk set -> a benchmark-ready folder
(sc.h5ad, bulk.h5ad, prepare.json) that `bench run --sc DIR/sc.h5ad --bulk DIR/bulk.h5ad` reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.data.counts import NORMALIZE_CHOICES
from bench.data.doses import NM_PER_UNIT
from bench.data.loaders import ObsKeys
from bench.prepare import BLOCK_CELLS, PrepareOptions, prepare
from bench.prepare_genes import DEFAULT_GENES
from bench.schema import CONTROL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="turn a downloaded single-cell h5ad and a bulk set into a benchmark-ready pair",
                       description="Read the single-cell file in blocks of cells (never whole), keep the L1000 landmarks "
                                   "plus the most variable genes of the control cells, log-normalise raw counts, rank DE "
                                   "genes once, and write DIR/sc.h5ad, DIR/bulk.h5ad and DIR/prepare.json.")
    p.add_argument("--sc", type=Path, required=True, help="single-cell h5ad (e.g. scPerturb's sci-Plex3, raw counts)")
    p.add_argument("--bulk", type=Path, required=True, help="bulk set: LINCS h5ad, L1000 .gct or .gctx (side-cars beside it)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new, empty, or a previous prepare output (replaced)")
    p.add_argument("--genes", type=int, default=DEFAULT_GENES,
                   help=f"genes kept: every shared landmark plus the most variable control-cell genes (default: {DEFAULT_GENES})")
    p.add_argument("--max-cells-per-condition", type=int, default=None, metavar="N",
                   help="keep a seeded random subset of at most N cells per (cell type, drug, dose); controls all kept "
                        "(default: every cell)")
    p.add_argument("--seed", type=int, default=0, help="seed of --max-cells-per-condition (default: 0)")
    p.add_argument("--smiles", type=Path, action="append", default=[], metavar="CSV",
                   help="table of 'drug name or pert_id,SMILES' rows attached as obs 'smiles' (repeatable)")
    p.add_argument("--block-cells", type=int, default=BLOCK_CELLS,
                   help=f"cells read per block: memory against speed; the output does not depend on it (default: {BLOCK_CELLS:,})")
    g = p.add_argument_group("single-cell columns (as for bench run)")
    g.add_argument("--drug-key", default=None, help="obs column of the drug (default: drug, condition, pert_iname or perturbation)")
    g.add_argument("--cell-type-key", default=None, help="obs column of the cell type (default: cell_type, cell_line or cell_id)")
    g.add_argument("--dose-key", default=None,
                   help="obs column of the dose (default: dose, pert_dose, dose_val or dose_value, with dose_unit where "
                        "present); none: one dose per drug")
    g.add_argument("--dose-unit", default=None, choices=list(NM_PER_UNIT), help="unit of plain dose numbers (default: nM)")
    g.add_argument("--control", default=CONTROL, help=f"drug label of control cells (default: {CONTROL}; DMSO/vehicle detected)")
    g.add_argument("--normalize", default="auto", choices=NORMALIZE_CHOICES,
                   help="auto: raw integer counts are normalised per cell to 10,000 then log1p; none: refuse raw counts "
                        "(default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    keys = ObsKeys(args.drug_key, args.cell_type_key, args.dose_key, args.control, args.dose_unit)
    options = PrepareOptions(genes=args.genes, max_cells_per_condition=args.max_cells_per_condition, seed=args.seed,
                             keys=keys, normalize=args.normalize, smiles=tuple(args.smiles), block_cells=args.block_cells)
    record = prepare(args.sc, args.bulk, args.out, options)
    n = record["counts"]
    print(f"prepared {args.out}: {n['cells_kept']:,} of {n['cells_in']:,} cells x {n['genes_kept']:,} genes "
          f"({n['landmarks']} landmarks + {n['variable_genes']} variable), {n['drugs']} drugs ({n['drugs_in_bulk']} with bulk "
          f"profiles), {n['bulk_profiles']:,} bulk profiles; {record['wall_seconds']:.1f} s")
    return 0
