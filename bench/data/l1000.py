"""LINCS L1000 files as GEO and CLUE publish them: a GCT/GCTX matrix, the tab-separated side-cars
beside it (`*inst_info*` for Levels 3 and 4, `*sig_info*` for Level 5, `*gene_info*`; plain or
gzipped, UTF-8 or Latin-1), compounds and their vehicle controls.

Level 5 signatures are already changes from control: their vehicle signatures are replaced by one
all-zero control profile per cell line, so a predictor that subtracts a bulk control subtracts zero,
and `uns['bench_load']['l1000_level']` says 5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.doses import text, written_with_unit
from bench.data.gct import read_gct, read_gctx, read_text_table
from bench.errors import BenchError
from bench.schema import CELL_TYPE, DOSE, DRUG

LANDMARK_FLAGS = ("1", "1.0", "Y", "y", "True", "true")
# The landmark flag as each publisher names it: the Broad's plate files (pr_is_lmark), GEO's gene_info
# side-cars of GSE92742/GSE70138 (pr_is_lm), cmapR's example GCTX rows (is_lm).
LANDMARK_COLUMNS = ("pr_is_lmark", "pr_is_lm", "is_lm")
SAMPLE_SIDE_CARS = (("inst_info", "inst_id"), ("sig_info", "sig_id"))
COMPOUNDS = ("trt_cp", "trt_poscon")  # pert_type of compound treatments
VEHICLES = ("ctl_vehicle", "ctl_untrt")  # pert_type prefixes of controls (also their .cns consensus)
LEVEL5_COLUMNS = ("distil_id", "distil_ids", "distil_nsample", "distil_cc_q75", "distil_ss")  # signature-only metadata


def read_table(path: Path, usecols: list[str] | None = None) -> pd.DataFrame:
    """A tab-separated side-car as strings (UTF-8, else Latin-1 as older files are), -666 missing."""
    try:
        return read_text_table(path, sep="\t", dtype=str, usecols=usecols).replace("-666", np.nan)
    except (ValueError, pd.errors.ParserError, OSError, EOFError):
        raise BenchError(f"{path}: not a tab-separated table with column(s) {', '.join(usecols or ['a header'])}") from None


def _side_cars(folder: Path, word: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{word}*.txt*") if p.name.endswith((".txt", ".txt.gz")))


def _header(path: Path) -> list[str]:
    """A side-car's column names; a one-line error for an empty or unreadable one."""
    try:
        return list(pd.read_csv(path, sep="\t", nrows=0, encoding="latin-1").columns)
    except (ValueError, pd.errors.ParserError, OSError, EOFError):  # EmptyDataError is a ValueError
        raise BenchError(f"{path}: empty or unreadable side-car: expected a tab-separated table with a header line") from None


def sample_info(raw: ad.AnnData, path: Path) -> tuple[ad.AnnData, str]:
    """Join the sample side-car whose ids (inst_id or sig_id) are the matrix's column ids, unless
    the file carries its own metadata. Returns the set and the side-car kind used ('' if none)."""
    if "pert_iname" in raw.obs:
        return raw, ""
    ids = pd.Index(raw.obs_names)
    tried: list[str] = []
    best: tuple[int, Path | None, str, str] = (0, None, "", "")
    info: Path | None
    for word, id_col in SAMPLE_SIDE_CARS:
        for info in _side_cars(path.parent, word):
            tried.append(info.name)
            if id_col in _header(info):
                hits = int(ids.isin(read_table(info, [id_col])[id_col]).sum())
                best = max(best, (hits, info, word, id_col), key=lambda b: b[0])
    hits, info, word, id_col = best
    if info is None:
        where = f"none of {', '.join(tried)} lists its column ids" if tried else "no *inst_info* or *sig_info* side-car lies beside it"
        raise BenchError(f"{path}: no sample metadata: no pert_iname in the file, and {where} (e.g. {ids[0]})")
    if hits < len(ids):
        missing = ids[~ids.isin(read_table(info, [id_col])[id_col])]
        raise BenchError(f"{path}: {len(missing)} of {len(ids)} column ids are not in {info.name} ({id_col}), e.g. {missing[0]}")
    table = read_table(info).drop_duplicates(id_col).set_index(id_col)
    raw.obs = raw.obs.join(table, how="left", rsuffix="_info")
    return raw, word


def gene_symbols(path: Path) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Gene metadata hook for GCT/GCTX: symbols (and landmark flags) from the file's rows or a
    `*gene_info*` side-car keyed by Entrez id; keeps the 978 landmark genes when flagged
    (LANDMARK_COLUMNS)."""

    def hook(var: pd.DataFrame) -> pd.DataFrame:
        var = var.copy()
        infos = [] if "pr_gene_symbol" in var else _side_cars(path.parent, "gene_info")
        if infos:
            table = read_table(infos[0]).set_index("pr_gene_id") if "pr_gene_id" in _header(infos[0]) else None
            if table is None:
                raise BenchError(f"{infos[0]}: no pr_gene_id column; expected an L1000 gene_info table")
            for col in ("pr_gene_symbol", *LANDMARK_COLUMNS):
                if col in table and col not in var:
                    var[col] = table[col].reindex(var.index.astype(str)).to_numpy()
        flag = next((c for c in LANDMARK_COLUMNS if c in var), None)
        if flag is not None:
            var = var[var[flag].astype(str).isin(LANDMARK_FLAGS).to_numpy()]
        if "pr_gene_symbol" in var and var["pr_gene_symbol"].isna().any():
            raise BenchError(f"{path}: {int(var['pr_gene_symbol'].isna().sum())} gene id(s) without a symbol in gene_info")
        return var

    return hook


def written_doses(obs: pd.DataFrame) -> pd.Series:
    """L1000 doses as written (strings, '' where missing): `pert_dose` with `pert_dose_unit` (bare
    numbers are µM), else the written-out `pert_idose` (`10 µM`, `10.0 um`), as GSE92742 and
    GSE70138 give them."""
    dose = obs["pert_dose"] if "pert_dose" in obs else pd.Series(np.nan, index=obs.index, dtype=object)
    if "pert_dose_unit" in obs:
        dose = written_with_unit(dose, obs["pert_dose_unit"])
    if "pert_idose" in obs:
        dose = dose.astype(object).where(dose.notna(), obs["pert_idose"].astype(object))
    return dose.map(lambda v: "" if pd.isna(v) else text(v)).astype(str)


def compounds(raw: ad.AnnData, control: str) -> tuple[ad.AnnData, int]:
    """Compound treatments and vehicle controls (labelled `control`) when pert_type says which;
    other perturbations (shRNA, ORF, ligands) are dropped. Returns the set and how many were dropped."""
    if "pert_type" not in raw.obs or "pert_iname" not in raw.obs:
        return raw, 0
    kind = raw.obs["pert_type"].astype(str)
    vehicle = kind.str.startswith(VEHICLES).to_numpy()
    raw.obs["pert_iname"] = np.where(vehicle, control, raw.obs["pert_iname"].astype(str))
    keep = vehicle | kind.isin(COMPOUNDS).to_numpy()
    return (raw, 0) if keep.all() else (raw[keep], int((~keep).sum()))


def read_l1000(path: Path, control: str) -> tuple[ad.AnnData, dict]:
    """A GCT/GCTX file and its side-cars, ready for `canonical`: symbols as var_names, landmark
    genes, sample metadata, compounds and controls, doses written out in `pert_dose`. Also returns
    what was learnt while reading (Level 5, perturbations dropped), for uns['bench_load']."""
    hook = gene_symbols(path)
    if path.suffix.lower() == ".gct":
        raw = read_gct(path)
        var = hook(raw.var)
        raw = raw[:, var.index].copy()
        raw.var = var
    else:
        raw = read_gctx(path, var_hook=hook)
    if "pr_gene_symbol" in raw.var:
        raw.var_names = raw.var["pr_gene_symbol"].astype(str).to_numpy()
    raw, side_car = sample_info(raw, path)
    raw.obs["pert_dose"] = written_doses(raw.obs)
    raw, dropped = compounds(raw, control)  # a view when profiles are dropped: canonical copies once
    notes = {"non_compound_profiles_dropped": dropped} if dropped else {}
    if side_car == "sig_info" or any(c in raw.obs for c in LEVEL5_COLUMNS):
        notes["l1000_level"] = 5
    return raw, notes


def zero_controls(bulk: ad.AnnData, control: str) -> tuple[ad.AnnData, int]:
    """Level 5: treated signatures plus one all-zero control profile per cell line (signatures are
    changes from control already). Returns the set and how many vehicle signatures were replaced."""
    drugs = bulk.obs[DRUG].astype(str).to_numpy()
    treated = np.flatnonzero(drugs != control)
    lines = sorted(set(bulk.obs[CELL_TYPE].astype(str).to_numpy()[treated]))
    x = np.zeros((len(treated) + len(lines), bulk.n_vars), dtype=np.float32)
    np.take(np.asarray(bulk.X), treated, axis=0, out=x[: len(treated)])
    zeros = pd.DataFrame({DRUG: control, CELL_TYPE: lines, DOSE: 0.0}, index=[f"zero_control:{line}" for line in lines])
    obs = pd.concat([bulk.obs.iloc[treated].astype({DRUG: str, CELL_TYPE: str}), zeros])
    obs[DRUG], obs[CELL_TYPE] = pd.Categorical(obs[DRUG]), pd.Categorical(obs[CELL_TYPE])
    out = ad.AnnData(x, obs=obs, var=bulk.var, uns=dict(bulk.uns))
    return out, int(len(drugs) - len(treated))
