"""Loaders for the public layouts: sci-Plex3 as prepared for CPA/chemCPA (h5ad), LINCS as h5ad
(chemCPA layout) or raw L1000 GCT/GCTX with tab-separated side-cars. Each maps its layout onto the
canonical obs columns drug / cell_type / dose (nM) and the control label, then validates it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem

from bench.data.gct import read_gct, read_gctx
from bench.data.validate import check_controls, check_expression, check_genes, require_columns
from bench.errors import BenchError
from bench.evaluation import DE_UNS_KEY
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG

# Column names tried, in order, when no explicit option is given.
DRUG_COLUMNS = ("drug", "condition", "pert_iname", "perturbation")
CELL_COLUMNS = ("cell_type", "cell_line", "cell_id")
DOSE_COLUMNS = ("dose", "pert_dose", "dose_val")
CONTROL_NAMES = ("control", "DMSO", "dmso", "vehicle", "Vehicle")
DE_KEYS = ("rank_genes_groups_cov", "all_DEGs")
DOSE_VAL_SCALE = 10_000.0  # CPA's sci-Plex3 dose_val is the dose in nM / 10,000
UM_TO_NM = 1_000.0


@dataclass(frozen=True)
class ObsKeys:
    """Which obs columns hold the drug, cell type and dose (None: detect), and the control label."""

    drug: str | None = None
    cell_type: str | None = None
    dose: str | None = None
    control: str = CONTROL


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
        raise BenchError(f"{path}: not a readable h5ad file ({type(exc).__name__}: {str(exc)[:80]})") from None


def _pick(obs: pd.DataFrame, given: str | None, candidates: tuple[str, ...], option: str, source: str) -> str:
    if given is not None:
        require_columns(obs, {option: given}, source)
        return given
    for c in candidates:
        if c in obs.columns:
            return c
    raise BenchError(f"{source}: no {option.removeprefix('--').replace('-key', '').replace('-', ' ')} column found "
                     f"(tried {', '.join(candidates)}); name it with {option}")


def canonical(adata: ad.AnnData, keys: ObsKeys, source: str, dose_scale: float = 1.0) -> ad.AnnData:
    """Copy of `adata` with canonical drug / cell_type / dose columns (float32 X, string genes)."""
    obs = adata.obs.copy()
    drug_col = _pick(obs, keys.drug, DRUG_COLUMNS, "--drug-key", source)
    cell_col = _pick(obs, keys.cell_type, CELL_COLUMNS, "--cell-type-key", source)
    dose_col = _pick(obs, keys.dose, DOSE_COLUMNS, "--dose-key", source)
    drug = obs[drug_col].astype(str).to_numpy().copy()
    is_ctrl = np.isin(drug, [keys.control])
    if "control" in obs.columns and drug_col != "control":  # CPA's 0/1 control flag
        flag = pd.to_numeric(obs["control"], errors="coerce").fillna(0).to_numpy() == 1
        is_ctrl |= flag
    if not is_ctrl.any():  # a vehicle named differently (DMSO, vehicle, ...)
        is_ctrl = np.isin(drug, CONTROL_NAMES)
    drug[is_ctrl] = keys.control
    dose = pd.to_numeric(obs[dose_col], errors="coerce").to_numpy(dtype=float)
    if dose_col == "dose_val":
        dose_scale = DOSE_VAL_SCALE
    dose = np.where(is_ctrl, 0.0, dose * dose_scale)
    if np.isnan(dose).any():
        raise BenchError(f"{source}: dose column '{dose_col}' has missing or non-numeric values for treated rows")
    obs[DRUG] = pd.Categorical(drug)
    obs[CELL_TYPE] = pd.Categorical(obs[cell_col].astype(str))
    obs[DOSE] = dose
    x = adata.X
    x = x.astype(np.float32, copy=False) if sp.issparse(x) else np.asarray(x, dtype=np.float32)
    out = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))
    out.uns.update({k: v for k, v in adata.uns.items() if k in DE_KEYS})
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


def load_single_cell(path: str | Path, keys: ObsKeys = ObsKeys()) -> ad.AnnData:
    """A single-cell h5ad (CPA/chemCPA sci-Plex3 layout, or any with explicit column options)."""
    source = str(path)
    adata = canonical(read_h5ad_checked(path), keys, source)
    check_genes(adata, source)
    check_expression(adata, source, log_normalised=True)
    check_controls(adata, source, keys.control)
    de = de_lists_from_uns(adata)
    if de:
        adata.uns[DE_UNS_KEY] = de
    for k in DE_KEYS:
        adata.uns.pop(k, None)
    return adata


def _side_car(folder: Path, word: str) -> Path | None:
    hits = sorted(folder.glob(f"*{word}*.txt"))
    return hits[0] if hits else None


LANDMARK_FLAGS = ("1", "1.0", "Y", "y", "True", "true")


def _sample_info(raw: ad.AnnData, path: Path) -> ad.AnnData:
    """Join a GEO sample side-car found beside a GCT/GCTX file on the column ids
    (inst_info: inst_id, sig_info: sig_id), unless the file carries its own metadata."""
    if "pert_iname" in raw.obs:
        return raw
    for word, id_col in (("inst_info", "inst_id"), ("sig_info", "sig_id")):
        info = _side_car(path.parent, word)
        if info is not None:
            table = pd.read_csv(info, sep="\t", dtype=str).set_index(id_col).replace("-666", np.nan)
            raw.obs = raw.obs.join(table, how="left", rsuffix="_info")
            break
    return raw


def _gene_symbols(path: Path) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Gene metadata hook for GCT/GCTX: symbols (and landmark flags) from the file's rows or a
    `*gene_info*.txt` side-car keyed by Entrez id; keeps the 978 landmark genes when flagged."""

    def hook(var: pd.DataFrame) -> pd.DataFrame:
        var = var.copy()
        info = None if "pr_gene_symbol" in var else _side_car(path.parent, "gene_info")
        if info is not None:
            table = pd.read_csv(info, sep="\t", dtype=str).set_index("pr_gene_id")
            for col in ("pr_gene_symbol", "pr_is_lmark"):
                if col in table and col not in var:
                    var[col] = table[col].reindex(var.index.astype(str)).to_numpy()
        if "pr_is_lmark" in var:
            var = var[var["pr_is_lmark"].astype(str).isin(LANDMARK_FLAGS).to_numpy()]
        if "pr_gene_symbol" in var and var["pr_gene_symbol"].isna().any():
            raise BenchError(f"{path}: {int(var['pr_gene_symbol'].isna().sum())} gene id(s) without a symbol in gene_info")
        return var

    return hook


def load_bulk(path: str | Path, keys: ObsKeys = ObsKeys()) -> ad.AnnData:
    """A bulk set: LINCS h5ad (chemCPA layout), or raw L1000 GCT / GCTX (+ side-cars beside it).
    L1000 doses (pert_dose, µM) become nM; DMSO / ctl_vehicle samples become controls."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    if suffix in (".gct", ".gctx"):
        hook = _gene_symbols(path)
        if suffix == ".gct":
            raw = read_gct(path)
            var = hook(raw.var)
            raw = raw[:, var.index].copy()
            raw.var = var
        else:
            raw = read_gctx(path, var_hook=hook)
        if "pr_gene_symbol" in raw.var:
            raw.var_names = raw.var["pr_gene_symbol"].astype(str).to_numpy()
        raw = _sample_info(raw, path)
        if "pert_type" in raw.obs:
            vehicle = raw.obs["pert_type"].astype(str).isin(["ctl_vehicle", "ctl_untrt"])
            raw.obs["pert_iname"] = np.where(vehicle, keys.control, raw.obs.get("pert_iname", "").astype(str))
        raw.obs["pert_dose"] = pd.to_numeric(raw.obs.get("pert_dose"), errors="coerce")
        bulk = canonical(raw, keys, str(path), dose_scale=UM_TO_NM)
    else:
        raw = read_h5ad_checked(path)
        scale = UM_TO_NM if (keys.dose or "pert_dose") == "pert_dose" and "pert_dose" in raw.obs else 1.0
        bulk = canonical(raw, keys, str(path), dose_scale=scale)
    check_genes(bulk, str(path))
    check_expression(bulk, str(path), log_normalised=False)
    return bulk
