"""Loaders for the public layouts: sci-Plex3 as prepared for CPA/chemCPA (h5ad), LINCS as h5ad
(chemCPA layout) or raw L1000 GCT/GCTX with tab-separated side-cars (bench/data/l1000.py). Each
file is read as untrusted (bench/data/hdf5.py), its layout mapped onto the canonical obs columns
drug / cell_type / dose (nM) and the control label (bench/data/columns.py), then validated. Doses
are read as written (bench/data/doses.py), combinations kept whole (bench/data/combinations.py);
how a file was read is kept in uns['bench_load']."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.data.columns import DEFAULT_KEYS, ObsKeys, canonical_obs
from bench.data.counts import NORMALIZE_CHOICES, TARGET_SUM, duplicated_symbols, log_normalise, looks_like_counts, merge_duplicate_genes
from bench.data.hdf5 import read_h5ad_checked
from bench.data.l1000 import read_l1000, written_doses, zero_controls
from bench.data.validate import check_controls, check_expression, check_genes, checks_reported_here
from bench.errors import BenchError
from bench.schema import CELL_TYPE, DE_UNS_KEY, DRUG

DE_KEYS = ("rank_genes_groups_cov", "all_DEGs")
LOAD_UNS_KEY = "bench_load"
PREPARE_UNS_KEY = "bench_prepare"  # written by `bench prepare`: how the file's genes were chosen
WHOLE_TRANSCRIPTOME = 10_000  # fewer genes than this: the file carries a gene selection


def canonical(adata: ad.AnnData, keys: ObsKeys, source: str, notes: dict | None = None) -> ad.AnnData:
    """Copy of `adata` with canonical drug / cell_type / dose columns (float32 X, string genes);
    uns['bench_load'] records the dose column, nM per plain number and any `notes` of the reader."""
    obs, info = canonical_obs(adata.obs, keys, source)
    x = adata.X
    x = x.astype(np.float32, copy=False) if sp.issparse(x) else np.asarray(x, dtype=np.float32)
    out = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))
    if not out.obs_names.is_unique:
        out.obs_names_make_unique()
    out.uns.update({k: v for k, v in adata.uns.items() if k in (*DE_KEYS, PREPARE_UNS_KEY)})
    out.uns[LOAD_UNS_KEY] = {**(notes or {}), **info}
    return out


def de_lists_from_uns(adata: ad.AnnData) -> dict[str, list[str]] | None:
    """CPA/chemCPA DE lists (keys 'celltype_drug_dose' or 'celltype_drug') as 'celltype_drug' ->
    gene symbols; with several doses of a pair, the list of the highest dose is kept."""
    given = next((adata.uns[k] for k in DE_KEYS if k in adata.uns), None)
    if given is None:
        return None
    pairs = adata.obs[[CELL_TYPE, DRUG]].drop_duplicates().astype(str)
    wanted = {f"{ct}_{d}" for ct, d in pairs.itertuples(index=False)}
    best: dict[str, tuple[float, list[str]]] = {}
    for key, genes in given.items():
        key = str(key)
        base, _, tail = key.rpartition("_")
        if key in wanted:
            pair, dose = key, np.inf
        elif base in wanted:
            pair, dose = base, float(tail) if tail.replace(".", "", 1).isdigit() else 0.0
        else:
            continue
        if pair not in best or dose > best[pair][0]:
            best[pair] = (dose, [str(g) for g in np.asarray(genes).ravel()])
    return {k: v for k, (_, v) in best.items()}


def resolve_expression(adata: ad.AnnData, normalize: str = "auto") -> ad.AnnData:
    """Duplicated gene symbols merged (counts summed; of normalised values the most expressed
    column kept) and raw counts log-normalised (`normalize` 'auto'; 'none' leaves them for
    check_expression to refuse); what was done is added to uns['bench_load']."""
    if normalize not in NORMALIZE_CHOICES:
        raise BenchError(f"--normalize {normalize}: expected one of {', '.join(NORMALIZE_CHOICES)}")
    info = dict(adata.uns.get(LOAD_UNS_KEY, {}))
    counts = looks_like_counts(adata.X)
    dup = duplicated_symbols(adata.var_names)
    if dup:
        x, names = merge_duplicate_genes(adata.X, adata.var_names, counts)
        adata = ad.AnnData(x, obs=adata.obs, var=pd.DataFrame(index=names), uns=adata.uns)
        info.update(duplicated_symbols=len(dup), duplicated_examples=[str(d) for d in dup[:3]],
                    duplicates_resolved="counts summed" if counts else "most expressed column kept")
    info["raw_counts"] = bool(counts)
    if counts and normalize == "auto":
        adata.X = log_normalise(adata.X)
        info["normalized"] = f"per cell to {TARGET_SUM:,.0f} counts, then log1p"
    adata.uns[LOAD_UNS_KEY] = info
    return adata


def gene_selection_note(adata: ad.AnnData) -> str | None:
    """A word on how the file's genes were chosen, where that matters for fairness: a selection made
    by its preparers over all cells lets the held-out drugs help choose the scored genes."""
    prepared = adata.uns.get(PREPARE_UNS_KEY)
    if isinstance(prepared, dict) and prepared.get("gene_selection"):
        return f"{adata.n_vars} genes chosen by bench prepare: {prepared['gene_selection']}"
    if adata.n_vars < WHOLE_TRANSCRIPTOME:
        return (f"the file carries a gene selection ({adata.n_vars} genes; a whole transcriptome has 20,000+): if its "
                "preparers chose it over all cells (as CPA/chemCPA's sci-Plex3 files choose their 2,000 genes), the "
                "held-out drugs helped choose the scored genes; `bench prepare` on the published counts chooses them "
                "from control cells only")
    return None


def reading_notes(adata: ad.AnnData) -> list[str]:
    """What mapping a file's columns chose that the file did not say outright (bench/data/columns.py)."""
    return [str(n) for n in adata.uns.get(LOAD_UNS_KEY, {}).get("notes", [])]


def load_notes(adata: ad.AnnData) -> list[str]:
    """What reading a file changed, or how its genes were chosen, in words (for `bench check` and
    the run's log)."""
    info = adata.uns.get(LOAD_UNS_KEY, {})
    lines = reading_notes(adata) + ([note] if (note := gene_selection_note(adata)) else [])
    if info.get("duplicated_symbols"):
        lines.append(f"{info['duplicated_symbols']} gene symbol(s) listed more than once (e.g. "
                     f"{', '.join(info['duplicated_examples'])}): {info['duplicates_resolved']}")
    if info.get("normalized"):
        lines.append(f"raw integer counts detected: normalised {info['normalized']} (as scanpy's normalize_total "
                     "with target_sum=1e4 and log1p; --normalize none refuses raw counts instead)")
    return lines


def load_single_cell(path: str | Path, keys: ObsKeys = DEFAULT_KEYS, normalize: str = "auto") -> ad.AnnData:
    """A single-cell h5ad: sci-Plex3 as scPerturb publishes it (raw counts, dose_value/dose_unit,
    cell_line, duplicated symbols) or as CPA/chemCPA prepare it, or any with explicit column options."""
    source = str(path)
    with checks_reported_here():
        adata = canonical(read_h5ad_checked(path), keys, source)
        adata = resolve_expression(adata, normalize)
    check_genes(adata, source)
    check_expression(adata, source, log_normalised=True)
    check_controls(adata, source, keys.control, adata.uns[LOAD_UNS_KEY]["drug_column"])
    de = de_lists_from_uns(adata)
    if de:
        adata.uns[DE_UNS_KEY] = de
    for k in DE_KEYS:
        adata.uns.pop(k, None)
    return adata


def load_bulk(path: str | Path, keys: ObsKeys = DEFAULT_KEYS) -> ad.AnnData:
    """A bulk set: LINCS h5ad (chemCPA layout), or raw L1000 GCT / GCTX (+ side-cars beside it).
    L1000 doses become nM; vehicle samples become controls; a Level 5 set gets zero controls."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    with checks_reported_here():
        if path.suffix.lower() in (".gct", ".gctx"):
            raw, notes = read_l1000(path, keys.control)
        else:
            raw, notes = read_h5ad_checked(path), {}
            if keys.dose is None and {"pert_dose_unit", "pert_idose"} & set(raw.obs.columns):  # LINCS as h5ad
                raw.obs["pert_dose"] = written_doses(raw.obs)
        bulk = canonical(raw, keys, str(path), notes)
        if notes.get("l1000_level") == 5:
            bulk, replaced = zero_controls(bulk, keys.control)
            bulk.uns[LOAD_UNS_KEY]["vehicle_signatures_replaced"] = replaced
    check_genes(bulk, str(path))
    check_expression(bulk, str(path), log_normalised=False)
    return bulk
