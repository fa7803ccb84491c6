"""`bench prepare`: a downloaded single-cell h5ad and a bulk set become a benchmark-ready pair
(`sc.h5ad`, `bulk.h5ad`, `prepare.json`) that `bench run` and `bench check` read with no options.

The single-cell matrix is never read whole (sci-Plex3 as scPerturb publishes it is ~800k cells x
110,983 genes of raw counts): obs and var are read as tables, X in blocks of cells, twice.
1. Each cell's library size over every gene, and per gene the moments (over control cells only)
   that choose the variable genes.
2. For the kept cells, the kept genes' log1p of counts per 10,000 of the full library size,
   duplicated symbols' counts summed first; already log-normalised input is copied as it is.
Kept genes: the L1000 landmarks the bulk set shares, plus the most variable genes of the control
cells by scanpy's 'seurat' normalised dispersion, so no test drug's response chooses them.
DE lists are ranked once, as the evaluator would (`rank_de_genes`), and stored as CPA does.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.data.columns import UNIT_COLUMNS, ObsKeys, canonical_obs
from bench.data.counts import NORMALIZE_CHOICES, TARGET_SUM, duplicated_symbols
from bench.data.drugs import SMILES, align_drug_names, attach_smiles, read_smiles_table
from bench.data.hdf5 import open_hdf5, read_metadata
from bench.data.loaders import DE_KEYS, PREPARE_UNS_KEY, load_bulk
from bench.data.validate import check_controls, check_expression, check_shared_genes, checks_reported_here
from bench.errors import BenchError
from bench.io import atomic_write_h5ad, atomic_write_json, dir_mode, folder_lock, replace_dir, writable_dir
from bench.prepare_genes import DEFAULT_GENES, check_gene_budget, select_genes, seurat_dispersion
from bench.prepare_scan import CellMatrix, scan, write_cells
from bench.schema import CELL_TYPE, DOSE, DRUG
from metrics.de import rank_de_genes

BLOCK_CELLS = 50_000  # cells read per block (CSR): ~40M stored values of sci-Plex3, a few hundred MB
OUTPUTS = ("sc.h5ad", "bulk.h5ad", "prepare.json")
DE_STORE_KEY = DE_KEYS[0]  # 'rank_genes_groups_cov': CPA's layout, read back by load_single_cell
PUBLISHED = "published_"  # prefix of a publisher column that would be misread beside the canonical ones


@dataclass(frozen=True)
class PrepareOptions:
    """What `bench prepare` does besides its inputs (the CLI options)."""

    genes: int = DEFAULT_GENES
    max_cells_per_condition: int | None = None
    seed: int = 0
    keys: ObsKeys = ObsKeys()
    normalize: str = "auto"
    smiles: tuple[Path, ...] = ()
    block_cells: int = BLOCK_CELLS

    def check(self) -> None:
        """One-line errors for values no run could use, before any file is read."""
        for option, value in (("--genes", self.genes), ("--block-cells", self.block_cells),
                              ("--max-cells-per-condition", self.max_cells_per_condition)):
            if value is not None and value < 1:
                raise BenchError(f"{option} {value}: expected a whole number of at least 1")
        if self.normalize not in NORMALIZE_CHOICES:
            raise BenchError(f"--normalize {self.normalize}: expected one of {', '.join(NORMALIZE_CHOICES)}")


def check_out_dir(out: Path, inputs: list[Path]) -> None:
    """--out may be new, empty, or a previous prepare output (its prepare.json and only OUTPUTS in it),
    which is replaced; never a folder holding an input, which the replacement would delete."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"{out}: exists and is not a folder; --out names the folder prepare writes")
    held = [p for p in inputs if Path(os.path.realpath(p)).is_relative_to(os.path.realpath(out))]
    if held:
        raise BenchError(f"{out}: holds the input {held[0]}, which replacing the folder would delete; choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS)
    if foreign or not (out / OUTPUTS[2]).is_file():
        what = f"holds '{foreign[0]}'" + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "") if foreign else f"has no {OUTPUTS[2]}"
        raise BenchError(f"{out}: exists and {what}, so it is not a previous prepare output ({', '.join(OUTPUTS)} only); "
                         "choose another --out")


def file_record(path: Path) -> dict:
    """Where an input was and which version it was, cheaply: path, bytes, modification time."""
    st = path.stat()
    mtime = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime": mtime}


def subsample_conditions(obs: pd.DataFrame, cap: int | None, seed: int, control: str) -> np.ndarray:
    """Cells kept: at most `cap` per (cell type, drug, dose), a seeded random subset of each; every
    control cell. Each cell draws one random priority and the lowest `cap` of a condition stay."""
    n = len(obs)
    is_control = (obs[DRUG].astype(str) == control).to_numpy()
    if cap is None:
        return np.ones(n, dtype=bool)
    group = obs.groupby([CELL_TYPE, DRUG, DOSE], observed=True, sort=True).ngroup().to_numpy()
    priority = np.random.default_rng(seed).random(n)
    order = np.lexsort((priority, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    keep = np.zeros(n, dtype=bool)
    keep[order] = rank < cap
    return keep | is_control


def stored_de_lists(adata: ad.AnnData, control: str) -> dict[str, np.ndarray]:
    """Every (cell type, drug) pair's genes in the evaluator's DE order (`rank_de_genes`: |Welch t|
    of treated vs control cells, doses pooled), all genes ranked, as 'celltype_drug' -> symbols."""
    ranked = rank_de_genes(adata, control)
    slashed = next((k for k in ranked if "/" in k), None)
    if slashed:
        raise BenchError(f"DE list key '{slashed}': a cell type or drug name holding '/' cannot be an h5ad key; rename it")
    names = adata.var_names.to_numpy(dtype=str)
    return {k: names[idx] for k, idx in ranked.items()}


def output_obs(obs: pd.DataFrame, steps: list[str]) -> pd.DataFrame:
    """The kept cells' obs as written: canonical and publisher columns, SMILES as a categorical; a
    publisher unit column the loader would pair with the canonical nM `dose` is renamed."""
    obs = obs.copy()
    if SMILES in obs:
        obs[SMILES] = pd.Categorical(obs[SMILES])
    stale = UNIT_COLUMNS[DOSE]
    if stale in obs:
        obs = obs.rename(columns={stale: PUBLISHED + stale})
        steps.append(f"publisher column '{stale}' renamed '{PUBLISHED + stale}': '{DOSE}' is now nM for every row")
    return obs


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def prepare(sc_path: Path, bulk_path: Path, out: Path, options: PrepareOptions = PrepareOptions()) -> dict:
    """Write `out`/sc.h5ad, bulk.h5ad and prepare.json (into a temporary sibling folder, then moved
    into place: on any error nothing is left behind). Returns what prepare.json records. A lock on
    --out stops a second prepare into the same folder at once."""
    options.check()
    sc_path, bulk_path, out = Path(sc_path), Path(bulk_path), Path(out)
    check_out_dir(out, [sc_path, bulk_path, *options.smiles])
    created = not out.exists()
    writable_dir(out)  # locked for the whole run, so it exists from the start (removed again on an error)
    try:
        with folder_lock(out):
            return _prepare(sc_path, bulk_path, out, options)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # only while it is still the empty folder made above
                out.rmdir()
        raise


def _prepare(sc_path: Path, bulk_path: Path, out: Path, options: PrepareOptions) -> dict:
    """`prepare` once its options and --out are checked and the folder is locked."""
    started = time.perf_counter()
    keys, control, source = options.keys, options.keys.control, str(sc_path)
    table = {k: v for p in options.smiles for k, v in read_smiles_table(p).items()}
    steps: list[str] = []

    # Metadata first: every error that needs no matrix is raised before the long passes.
    raw_obs, raw_var = read_metadata(sc_path)
    with checks_reported_here():
        obs, load_info = canonical_obs(raw_obs, keys, source)
        cells = ad.AnnData(obs=obs)
    check_controls(cells, source, control, load_info["drug_column"])
    names = pd.Index(raw_var.index.astype(str))
    codes, symbols = pd.factorize(names)
    dup = duplicated_symbols(names)
    bulk = load_bulk(bulk_path, ObsKeys(control=control))
    shared = check_shared_genes(ad.AnnData(var=pd.DataFrame(index=symbols)), bulk, source, str(bulk_path))
    landmark = np.asarray(symbols.isin(bulk.var_names))
    check_gene_budget(landmark, options.genes)
    missing: dict[str, int] = {}
    if table:
        missing = {role: attach_smiles(adata, table, control) for role, adata in (("single_cell", cells), ("bulk", bulk))}
        steps.append(f"SMILES attached from {len(options.smiles)} table(s) by drug name, then pert_id; drugs left "
                     f"without one: {missing['single_cell']} single-cell, {missing['bulk']} bulk")
    matches = align_drug_names(cells, bulk, control)
    obs = cells.obs
    sc_drugs = sorted(set(obs[DRUG].astype(str)) - {control})
    steps.append(f"bulk drug names respelled as the single-cell set writes them: {len(matches)} of {len(sc_drugs)} "
                 "single-cell drugs have bulk profiles")

    fh, _ = open_hdf5(sc_path, "h5ad")
    with fh:
        matrix = CellMatrix(fh, sc_path)
        if matrix.shape != (len(obs), len(names)):
            raise BenchError(f"{sc_path}: X is {matrix.shape[0]} x {matrix.shape[1]} but obs has {len(obs)} rows and var {len(names)}")
        is_control = (obs[DRUG].astype(str) == control).to_numpy()
        scanned = scan(matrix, names, is_control, options.normalize, options.block_cells, source)
        mean, var = scanned.moments.mean_var()
        dispersion = seurat_dispersion(mean, var)
        genes = select_genes(landmark, dispersion, options.genes)
        keep = subsample_conditions(obs, options.max_cells_per_condition, options.seed, control)
        x = write_cells(matrix, names, scanned, genes, keep, options.block_cells)
    steps.append(f"X ({matrix.shape[0]:,} x {matrix.shape[1]:,}, {'dense' if matrix.dense else 'CSR'}) read in blocks of "
                 f"{matrix.block_rows(options.block_cells):,} cells, twice")
    if dup:
        steps.append(f"{len(dup)} gene symbol(s) listed more than once (e.g. {', '.join(dup[:3])}): "
                     + ("counts summed" if scanned.counts else "the column most expressed over all cells kept"))
    steps.append(f"raw integer counts: log1p of counts per {TARGET_SUM:,.0f} of each cell's library size over all "
                 f"{matrix.shape[1]:,} genes" if scanned.counts else "values not raw counts: written as they are (no normalisation)")
    n_land, n_var = int(landmark.sum()), int(genes.sum() - landmark.sum())
    selection = (f"{n_land} L1000 landmarks the bulk set shares + {n_var} most variable genes of the "
                 f"{scanned.moments.n:,} control cells only (scanpy's seurat normalised dispersion; no drug's response chose them)")
    steps.append(f"genes: {selection}")
    if options.max_cells_per_condition is not None:
        steps.append(f"cells: at most {options.max_cells_per_condition} per (cell type, drug, dose), seeded random subset "
                     f"(seed {options.seed}); all {int(is_control.sum()):,} control cells kept")

    var_out = pd.DataFrame({col: raw_var[col].to_numpy()[scanned.columns[genes]] for col in raw_var.columns},
                           index=pd.Index(symbols[genes], dtype=str))
    var_out["landmark"], var_out["highly_variable"] = landmark[genes], ~landmark[genes]
    var_out["means"], var_out["dispersions_norm"] = np.log1p(mean[genes]), dispersion[genes]  # as scanpy's columns
    adata = ad.AnnData(x, obs=output_obs(obs.loc[keep], steps), var=var_out)
    if not adata.obs_names.is_unique:
        adata.obs_names_make_unique()
    check_expression(adata, source, log_normalised=True)
    adata.uns[DE_STORE_KEY] = stored_de_lists(adata, control)
    adata.uns[PREPARE_UNS_KEY] = {"gene_selection": selection, "raw_counts": bool(scanned.counts)}  # for bench check/run
    steps.append(f"DE lists: every (cell type, drug) pair's {adata.n_vars} genes ranked by |Welch t| vs its cell type's "
                 f"controls (doses pooled, as the evaluator ranks them), stored in uns['{DE_STORE_KEY}']")

    record = {
        "inputs": {"sc": file_record(sc_path), "bulk": file_record(bulk_path), "smiles": [file_record(p) for p in options.smiles]},
        "options": {**asdict(options), "keys": asdict(keys), "smiles": [str(p) for p in options.smiles]},
        "counts": {
            "cells_in": int(len(obs)), "cells_kept": int(adata.n_obs), "control_cells": int(is_control.sum()),
            "genes_in": int(len(names)), "symbols_in": int(len(symbols)), "genes_kept": int(adata.n_vars),
            "landmarks": n_land, "variable_genes": n_var, "shared_with_bulk": int(shared),
            "cell_types": int(adata.obs[CELL_TYPE].nunique()), "drugs": len(sc_drugs), "drugs_in_bulk": len(matches),
            "de_lists": len(adata.uns[DE_STORE_KEY]), "bulk_profiles": int(bulk.n_obs), "bulk_genes": int(bulk.n_vars),
        },
        "raw_counts": bool(scanned.counts),
        "gene_selection": {"landmarks": "single-cell symbols the bulk set measures",
                           "variable": "scanpy highly_variable_genes flavor='seurat' normalised dispersion (20 mean bins) "
                                       "of the log-normalised values",
                           "cells": f"control cells only ({scanned.moments.n}): no drug's response chooses the genes"},
        "drug_matches": {d: list(m) for d, m in matches.items()},
        "smiles_missing": missing,
        "dose_reading": load_info,
        "steps": steps,
    }
    for line in steps:
        _say(f"prepare: {line}")
    _write(out, adata, bulk, record, started)
    return record


def _write(out: Path, sc: ad.AnnData, bulk: ad.AnnData, record: dict, started: float) -> None:
    """The three outputs into a temporary sibling folder, then `replace_dir`; removed on any error."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(dir_mode())  # mkdtemp makes it private; prepared data is meant to be shared
        atomic_write_h5ad(tmp / OUTPUTS[0], sc)
        atomic_write_h5ad(tmp / OUTPUTS[1], bulk)
        record["wall_seconds"] = round(time.perf_counter() - started, 2)
        atomic_write_json(tmp / OUTPUTS[2], record)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
