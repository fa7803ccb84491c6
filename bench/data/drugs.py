"""Drug identity across data sets: one spelling of each drug name (L1000 writes `crizotinib`,
sci-Plex3 `Crizotinib`), and SMILES attached from name -> SMILES tables such as chemCPA's."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.schema import CONTROL, DRUG

SMILES = "smiles"
SMILES_COLUMNS = ("SMILES", "smiles", "canonical_smiles")  # what CPA/chemCPA files already carry
ID_COLUMNS = (DRUG, "pert_id")  # obs columns looked up in a table, in order


def align_drug_names(sc: ad.AnnData, bulk: ad.AnnData, control: str = CONTROL) -> int:
    """Respell bulk drug names that differ from a single-cell drug only by letter case, so both sets
    name a drug alike; returns how many single-cell drugs the bulk set measures afterwards."""
    sc_drugs = set(sc.obs[DRUG].astype(str)) - {control}
    by_fold = {d.casefold(): d for d in sc_drugs}
    names = bulk.obs[DRUG].astype(str)
    bulk.obs[DRUG] = pd.Categorical(names.map(lambda d: d if d == control else by_fold.get(d.casefold(), d)))
    return len(sc_drugs & set(bulk.obs[DRUG].astype(str)))


def read_smiles_table(path: str | Path) -> dict[str, str]:
    """A headerless comma-separated table whose first two columns are a drug name or id and its
    SMILES (chemCPA's trapnell_drugs_smiles.csv, lincs_drugs_smiles.csv); keys are case-folded."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        table = pd.read_csv(path, header=None, dtype=str, usecols=[0, 1], skipinitialspace=True)
    except (ValueError, pd.errors.ParserError) as exc:
        raise BenchError(f"{path}: expected rows 'name,SMILES' ({str(exc)[:60]})") from None
    keys = table[0].str.strip().str.casefold()
    table = table.assign(key=keys).dropna().drop_duplicates("key")
    return dict(zip(table["key"], table[1].str.strip()))


def attach_smiles(adata: ad.AnnData, table: dict[str, str], control: str = CONTROL) -> int:
    """Fill obs['smiles'] of treated rows: a SMILES column the file carries wins, then the table by
    drug name, then by pert_id. Returns the number of treated drugs left without a SMILES."""
    obs = adata.obs
    smiles = pd.Series(np.nan, index=obs.index, dtype=object)
    for col in SMILES_COLUMNS + (SMILES,):
        if col in obs:
            smiles = smiles.where(smiles.notna(), obs[col].astype(object).replace({"": np.nan}))
    for col in ID_COLUMNS:
        if col in obs:
            smiles = smiles.where(smiles.notna(), obs[col].astype(str).str.casefold().map(table))
    treated = (obs[DRUG].astype(str) != control).to_numpy()
    smiles[~treated] = np.nan
    obs[SMILES] = smiles
    return int(obs.loc[treated & smiles.isna().to_numpy(), DRUG].nunique())
