"""Drug identity across data sets. Publishers spell one compound differently: L1000 writes
`crizotinib` and `TG-101348`, sci-Plex3 `Crizotinib (PF-02341066)`, `Fedratinib (SAR302503,
TG101348)`, `Flavopiridol HCl` or `Glesatinib?(MGCD265)`. Bulk names are matched to single-cell names
by exact name, then letter case, then name keys (aliases in brackets, salt words and punctuation
dropped), then molecule (SMILES from the files or `--smiles` tables), and respelled to the
single-cell name; SMILES are attached from name or `pert_id` -> SMILES tables such as chemCPA's."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.combinations import is_combination
from bench.errors import BenchError
from bench.schema import CONTROL, DRUG

SMILES = "smiles"
SMILES_COLUMNS = ("SMILES", "smiles", "canonical_smiles")  # what CPA/chemCPA files already carry
ID_COLUMNS = (DRUG, "pert_id")  # obs columns looked up in a table, in order
# Counter-ions and hydrates written after a compound's name (vendor catalogue names).
SALT_WORDS = frozenset(
    "hcl 2hcl 3hcl hbr hydrochloride dihydrochloride trihydrochloride mesylate dimesylate methanesulfonate "
    "maleate tosylate ditosylate citrate phosphate diphosphate sulfate bisulfate sodium disodium potassium "
    "calcium acetate tartrate bitartrate fumarate hemifumarate succinate besylate lactate malate oxalate "
    "hydrate monohydrate dihydrate trihydrate salt free base".split())
MIN_KEY = 3  # shorter keys ('+', 'az') name too many compounds to identify one
MATCH_WAYS = ("name", "letter case", "alias or salt", "molecule", "molecule (stereo ignored)")


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


def name_keys(name: str) -> set[str]:
    """The keys a drug name is known by: the whole name, the name before any bracket without salt
    words, and each alias inside brackets (`Roscovitine (Seliciclib,CYC202)` -> roscovitine,
    seliciclib, cyc202), letters and digits only, lower case; `?` (a lost non-ASCII character) and
    other punctuation count as spaces."""
    text = str(name).replace("?", " ")
    keys = {_key(text)}
    head, *rest = re.split(r"[(\[]", text, maxsplit=1)
    words = [w for w in head.split() if _key(w) not in SALT_WORDS]
    keys.add(_key(" ".join(words)))
    for inside in re.findall(r"[(\[]([^)\]]*)[)\]]", text):
        keys.update(_key(alias) for alias in re.split(r"[,;/]", inside))
    return {k for k in keys if len(k) >= MIN_KEY}


def molecule_keys(smiles: str) -> tuple[str, str] | None:
    """(InChIKey, its connectivity block) of a SMILES's parent molecule (largest organic fragment:
    salts and solvents dropped); None when RDKit cannot read it."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.MolStandardize import rdMolStandardize

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    key = Chem.MolToInchiKey(rdMolStandardize.FragmentParent(mol))
    return (key, key.split("-")[0]) if key else None


def _unique_index(keys_of: dict[str, set[str]]) -> dict[str, str]:
    """key -> the one name carrying it (keys shared by several names identify none)."""
    owners: dict[str, set[str]] = {}
    for name, keys in keys_of.items():
        for k in keys:
            owners.setdefault(k, set()).add(name)
    return {k: next(iter(v)) for k, v in owners.items() if len(v) == 1}


def match_drugs(sc_drugs: list[str], bulk_drugs: list[str], sc_smiles: dict[str, str] | None = None,
                bulk_smiles: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """single-cell drug -> (bulk drug, how it was matched), each drug matched at most once, in the
    order of MATCH_WAYS: exact name, letter case, a shared name key owned by one drug on each side,
    the parent molecule's InChIKey, then its connectivity block (stereo ignored); combinations
    (`A+B`) are matched by name only."""
    found: dict[str, tuple[str, str]] = {}
    free_bulk = set(bulk_drugs) - set(sc_drugs)
    for d in sc_drugs:
        if d in bulk_drugs:
            found[d] = (d, "name")

    def step(how: str, keys_of) -> None:
        sc_keys = {d: keys_of(d, "sc") for d in sc_drugs if d not in found}
        bulk_keys = {b: keys_of(b, "bulk") for b in free_bulk}
        sc_index, bulk_index = _unique_index(sc_keys), _unique_index(bulk_keys)
        for d, keys in sc_keys.items():
            hits = {bulk_index[k] for k in keys if k in bulk_index and sc_index.get(k) == d} & free_bulk
            if len(hits) == 1:
                found[d] = (hits.pop(), how)
                free_bulk.discard(found[d][0])

    step("letter case", lambda n, side: {n.casefold()})
    step("alias or salt", lambda n, side: name_keys(n))
    smiles = {"sc": sc_smiles or {}, "bulk": bulk_smiles or {}}
    if smiles["sc"] and smiles["bulk"]:
        cache: dict[str, tuple[str, str] | None] = {}

        def molecule(part: int):
            def keys_of(name: str, side: str) -> set[str]:
                s = smiles[side].get(name)
                if not isinstance(s, str) or is_combination(name):  # a combination is no one molecule
                    return set()
                if s not in cache:
                    cache[s] = molecule_keys(s)
                keys = cache[s]
                return {keys[part]} if keys else set()
            return keys_of

        step("molecule", molecule(0))
        step("molecule (stereo ignored)", molecule(1))
    return found


def drug_smiles(adata: ad.AnnData, control: str = CONTROL) -> dict[str, str]:
    """drug -> SMILES of a set's treated drugs, from obs 'smiles' (attach_smiles) where present."""
    if SMILES not in adata.obs:
        return {}
    obs = adata.obs.loc[(adata.obs[DRUG].astype(str) != control).to_numpy(), [DRUG, SMILES]].dropna()
    return dict(zip(obs[DRUG].astype(str), obs[SMILES].astype(str)))


def align_drug_names(sc: ad.AnnData, bulk: ad.AnnData, control: str = CONTROL) -> dict[str, tuple[str, str]]:
    """Respell the bulk names of single-cell drugs (match_drugs) to their single-cell spelling, so
    both sets name a drug alike. Returns single-cell drug -> (bulk name as written, how matched)."""
    sc_drugs = sorted(set(sc.obs[DRUG].astype(str)) - {control})
    names = bulk.obs[DRUG].astype(str)
    found = match_drugs(sc_drugs, sorted(set(names) - {control}), drug_smiles(sc, control), drug_smiles(bulk, control))
    respell = {b: d for d, (b, _) in found.items()}
    bulk.obs[DRUG] = pd.Categorical(names.map(lambda d: respell.get(d, d)))
    return found


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


def _lookup(names: pd.Series, table: dict[str, str], by_key: dict[str, str]) -> pd.Series:
    """SMILES of each name: by its case-folded spelling, else by a name key that one table entry
    owns (`by_key`: key -> SMILES)."""
    distinct = {n: table.get(n.casefold()) or next((by_key[k] for k in sorted(name_keys(n)) if k in by_key), None)
                for n in names.unique()}
    return names.map(distinct)


def file_smiles(obs: pd.DataFrame) -> pd.Series | None:
    """Each row's SMILES from the columns a file carries (SMILES_COLUMNS, the first non-empty one
    per row, as object strings or missing); None when it carries none of them."""
    columns = [c for c in SMILES_COLUMNS if c in obs]
    if not columns:
        return None
    smiles = pd.Series(np.nan, index=obs.index, dtype=object)
    for col in columns:
        smiles = smiles.where(smiles.notna(), obs[col].astype(object).replace({"": np.nan}))
    return smiles


def attach_smiles(adata: ad.AnnData, table: dict[str, str], control: str = CONTROL) -> int:
    """Fill obs['smiles'] of treated rows: a SMILES column the file carries wins, then the table by
    drug name (spelling, else name keys), then by pert_id. Returns the number of treated drugs left
    without a SMILES."""
    obs = adata.obs
    carried = file_smiles(obs)
    smiles = pd.Series(np.nan, index=obs.index, dtype=object) if carried is None else carried
    by_key = {k: table[n] for k, n in _unique_index({n: name_keys(n) for n in table}).items()}
    for col in ID_COLUMNS:
        if col in obs:
            smiles = smiles.where(smiles.notna(), _lookup(obs[col].astype(str), table, by_key))
    treated = (obs[DRUG].astype(str) != control).to_numpy()
    smiles[~treated] = np.nan
    obs[SMILES] = smiles
    return int(obs.loc[treated & smiles.isna().to_numpy(), DRUG].nunique())
