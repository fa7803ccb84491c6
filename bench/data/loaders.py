"""Loaders for the public layouts: sci-Plex3 as prepared for CPA/chemCPA (h5ad), LINCS as h5ad
(chemCPA layout) or raw L1000 GCT/GCTX with tab-separated side-cars (bench/data/l1000.py). Each
maps its layout onto the canonical obs columns drug / cell_type / dose (nM) and the control label,
then validates it. Doses are read as written (bench/data/doses.py), combinations kept whole
(bench/data/combinations.py); how a file was read is kept in uns['bench_load']."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem

from bench.data.combinations import DOSE_PARTS, treated_conditions
from bench.data.counts import NORMALIZE_CHOICES, TARGET_SUM, duplicated_symbols, log_normalise, looks_like_counts, merge_duplicate_genes
from bench.data.doses import NM_PER_UNIT, parse_doses, written_with_unit
from bench.data.drugs import SMILES, file_smiles
from bench.data.l1000 import read_l1000, written_doses, zero_controls
from bench.data.validate import (check_controls, check_expression, check_genes, checks_reported_here, require_columns,
                                 unreadable)
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DE_UNS_KEY, DOSE, DRUG

# Column names tried, in order, when no explicit option is given.
DRUG_COLUMNS = ("drug", "condition", "pert_iname", "perturbation")
CELL_COLUMNS = ("cell_type", "cell_line", "cell_id")
DOSE_COLUMNS = ("dose", "pert_dose", "dose_val", "dose_value")
# A dose column's unit column, where the layout keeps the unit apart (scPerturb: dose_value in dose_unit).
UNIT_COLUMNS = {"dose_value": "dose_unit", "dose": "dose_unit", "pert_dose": "pert_dose_unit"}
CONTROL_NAMES = ("control", "DMSO", "dmso", "vehicle", "Vehicle")
DE_KEYS = ("rank_genes_groups_cov", "all_DEGs")
# nM per plain number of a dose column: CPA's sci-Plex3 dose_val is the dose in nM / 10,000, L1000's pert_dose is µM.
COLUMN_NM_PER_UNIT: dict[str | None, float] = {"dose_val": 10_000.0, "pert_dose": NM_PER_UNIT["uM"]}
NO_DOSE = "none"  # --dose-key none: ignore any dose column, one dose per drug
LOAD_UNS_KEY = "bench_load"
PREPARE_UNS_KEY = "bench_prepare"  # written by `bench prepare`: how the file's genes were chosen
WHOLE_TRANSCRIPTOME = 10_000  # fewer genes than this: the file carries a gene selection


@dataclass(frozen=True)
class ObsKeys:
    """Which obs columns hold the drug, cell type and dose (None: detect; dose 'none': no dose),
    the control label, and the unit of plain dose numbers (None: nM, or the layout's own)."""

    drug: str | None = None
    cell_type: str | None = None
    dose: str | None = None
    control: str = CONTROL
    dose_unit: str | None = None


def _float32_matrix(elem: h5py.Dataset | h5py.Group, path: Path) -> np.ndarray | sp.csr_matrix:
    """An h5ad matrix element read as float32 (dense, or CSR): HDF5 converts while reading, so no
    full-precision copy of a float64 file is ever held."""
    if isinstance(elem, h5py.Dataset):
        return elem.astype(np.float32)[:]
    kind = str(elem.attrs.get("encoding-type", elem.attrs.get("h5sparse_format", ""))).removesuffix("_matrix")
    if kind not in ("csr", "csc"):
        raise BenchError(f"{path}: X is stored as '{kind or 'an unknown group'}', expected a dense array or a CSR/CSC matrix")
    shape = tuple(int(n) for n in elem.attrs.get("shape", elem.attrs.get("h5sparse_shape", ())))
    parts = (elem["data"].astype(np.float32)[:], elem["indices"][:], elem["indptr"][:])
    return sp.csr_matrix(parts, shape=shape) if kind == "csr" else sp.csc_matrix(parts, shape=shape).tocsr()


def read_h5ad_checked(path: str | Path) -> ad.AnnData:
    """Read obs, var, uns and X (as float32) of an h5ad file; layers, obsm and raw are not loaded,
    so a file that also stores raw counts costs no more memory than its X."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as fh:
            if "X" not in fh or "obs" not in fh:
                raise BenchError(f"{path}: not an h5ad file (no X or obs)")
            parts = {k: read_elem(fh[k]) for k in ("obs", "var", "uns") if k in fh}
            x = _float32_matrix(fh["X"], path)
        return ad.AnnData(x, **parts)
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001  h5py and anndata raise many types for a bad file
        raise unreadable(path, "h5ad", exc) from None


def _pick(obs: pd.DataFrame, given: str | None, candidates: tuple[str, ...], option: str, source: str) -> str:
    if given is not None:
        require_columns(obs, {option: given}, source)
        return given
    for c in candidates:
        if c in obs.columns:
            return c
    raise BenchError(f"{source}: no {option.removeprefix('--').replace('-key', '').replace('-', ' ')} column found "
                     f"(tried {', '.join(candidates)}); name it with {option}")


def _dose_column(obs: pd.DataFrame, given: str | None, source: str) -> str | None:
    """The dose column: the one named, else the first of DOSE_COLUMNS; None for one dose per drug
    (`--dose-key none`, or no dose column at all)."""
    if given is not None and given.lower() == NO_DOSE:
        return None
    if given is None and not any(c in obs.columns for c in DOSE_COLUMNS):
        return None
    return _pick(obs, given, DOSE_COLUMNS, "--dose-key", source)


def _doses(obs: pd.DataFrame, drug: np.ndarray, treated: np.ndarray, column: str | None, keys: ObsKeys,
           source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Drug label, dose (nM) and doses per drug of the treated rows, and nM per plain number. A unit
    column beside the dose column (UNIT_COLUMNS) gives each row's unit unless --dose-unit is set."""
    nm_per_unit = NM_PER_UNIT[keys.dose_unit] if keys.dose_unit else COLUMN_NM_PER_UNIT.get(column, 1.0)
    codes, table = np.full(int(treated.sum()), -1), np.array([()], dtype=object)
    if column is not None:
        written = obs.loc[treated, column].astype(object)
        unit = UNIT_COLUMNS.get(column)
        if keys.dose_unit is None and unit in obs.columns:
            written = written_with_unit(written, obs.loc[treated, unit].astype(object))
        codes, table, bad = parse_doses(written, nm_per_unit)
        if bad:
            shown = ", ".join(repr(b) for b in bad[:3]) + (", ..." if len(bad) > 3 else "")
            raise BenchError(f"{source}: dose column '{column}' holds {shown}: expected a number (in --dose-unit, "
                             "default nM) or a number with a unit (M, mM, uM/µM, nM), one per drug for a combination (1+1)")
    vehicles = {keys.control, *CONTROL_NAMES}
    label, total, parts = treated_conditions(drug[treated], codes, table, column is not None, vehicles,
                                             f"{source}: dose column '{column}'")
    return label, total, parts, nm_per_unit


def canonical_obs(obs: pd.DataFrame, keys: ObsKeys, source: str) -> tuple[pd.DataFrame, dict]:
    """A copy of `obs` with canonical drug / cell_type / dose (nM) columns added, and how they were
    read (dose column, nM per plain number, the unit column) for uns['bench_load']. Works on obs
    alone, so a large file's metadata can be mapped before any of its matrix is read."""
    obs = obs.copy()
    drug_col = _pick(obs, keys.drug, DRUG_COLUMNS, "--drug-key", source)
    cell_col = _pick(obs, keys.cell_type, CELL_COLUMNS, "--cell-type-key", source)
    dose_col = _dose_column(obs, keys.dose, source)
    written = obs[drug_col].astype(str).to_numpy()
    is_ctrl = np.isin(written, [keys.control])
    if "control" in obs.columns and drug_col != "control":  # CPA's 0/1 control flag
        flag = pd.to_numeric(obs["control"], errors="coerce").fillna(0).to_numpy() == 1
        is_ctrl |= flag
    if not is_ctrl.any():  # a vehicle named differently (DMSO, vehicle, ...)
        is_ctrl = np.isin(written, CONTROL_NAMES)
    label, total, parts, nm_per_unit = _doses(obs, written, ~is_ctrl, dose_col, keys, source)
    real = label != ""  # not a combination of vehicles only
    rows = np.flatnonzero(~is_ctrl)[real]
    drug, dose = np.full(len(written), keys.control, dtype=object), np.zeros(len(written))
    drug[rows], dose[rows] = label[real], total[real]
    obs[DRUG] = pd.Categorical(drug)
    obs[CELL_TYPE] = pd.Categorical(obs[cell_col].astype(str))
    obs[DOSE] = dose
    carried = file_smiles(obs)  # chemCPA's sci-Plex3 writes SMILES, its LINCS canonical_smiles
    if carried is not None:
        obs[SMILES] = pd.Categorical(carried.where(drug != keys.control))
    if (parts != "").any():
        obs[DOSE_PARTS] = ""
        obs.iloc[rows, obs.columns.get_loc(DOSE_PARTS)] = parts[real]
    unit_col = UNIT_COLUMNS.get(dose_col or "", "") if keys.dose_unit is None else ""
    info = {"dose_column": dose_col or "", "nm_per_unit": nm_per_unit,
            "dose_unit_column": unit_col if unit_col in obs.columns else ""}
    if unit_col == "dose_unit" and unit_col in obs.columns:  # read: keep it, but not beside the nM `dose`
        obs = obs.rename(columns={unit_col: f"published_{unit_col}"})
    return obs, info


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


def load_notes(adata: ad.AnnData) -> list[str]:
    """What reading a file changed, or how its genes were chosen, in words (for `bench check` and
    the run's log)."""
    info = adata.uns.get(LOAD_UNS_KEY, {})
    lines = [note] if (note := gene_selection_note(adata)) else []
    if info.get("duplicated_symbols"):
        lines.append(f"{info['duplicated_symbols']} gene symbol(s) listed more than once (e.g. "
                     f"{', '.join(info['duplicated_examples'])}): {info['duplicates_resolved']}")
    if info.get("normalized"):
        lines.append(f"raw integer counts detected: normalised {info['normalized']} (as scanpy's normalize_total "
                     "with target_sum=1e4 and log1p; --normalize none refuses raw counts instead)")
    return lines


def load_single_cell(path: str | Path, keys: ObsKeys = ObsKeys(), normalize: str = "auto") -> ad.AnnData:
    """A single-cell h5ad: sci-Plex3 as scPerturb publishes it (raw counts, dose_value/dose_unit,
    cell_line, duplicated symbols) or as CPA/chemCPA prepare it, or any with explicit column options."""
    source = str(path)
    with checks_reported_here():
        adata = canonical(read_h5ad_checked(path), keys, source)
        adata = resolve_expression(adata, normalize)
    check_genes(adata, source)
    check_expression(adata, source, log_normalised=True)
    check_controls(adata, source, keys.control)
    de = de_lists_from_uns(adata)
    if de:
        adata.uns[DE_UNS_KEY] = de
    for k in DE_KEYS:
        adata.uns.pop(k, None)
    return adata


def load_bulk(path: str | Path, keys: ObsKeys = ObsKeys()) -> ad.AnnData:
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
