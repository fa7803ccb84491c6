"""The `unseen_drug_families` split: whole drug families held out, so that no test drug has a
sibling (same mechanism, or same Bemis-Murcko scaffold) in training.

`unseen_drugs` lets a predictor score well by recognising a test drug's family from its training
siblings; here it has to generalise to a new mechanism. Families come from the obs column
`drug_family` (the generator writes it; a real file can carry one, e.g. sci-Plex3's pathway
annotation under that name), or, when
drugs have SMILES (obs `smiles`, from `--smiles` tables), from their Bemis-Murcko scaffolds. A drug
combination (`A+B`) is held out with any drug it contains, as in `unseen_drugs`.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.benchmark import FAMILY
from bench.data.drugs import SMILES
from bench.errors import BenchError
from bench.schema import CONTROL, DRUG
from splits.base import TEST, TRAIN, VAL, Split, check_folds, drug_leaks, fold_of, register_split, role_of


def scaffold(smiles: str) -> str | None:
    """The Bemis-Murcko scaffold (canonical SMILES) of a molecule; None for an unreadable SMILES or
    an acyclic molecule (no ring system to share)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    core = Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol))
    return core or None


def drug_groups(adata: ad.AnnData, control: str = CONTROL) -> dict[str, str]:
    """drug -> group of every treated drug: its scaffold when the set has SMILES, else its
    `drug_family`. A drug without either forms a group of its own."""
    return obs_groups(adata.obs, control)


def obs_groups(obs: pd.DataFrame, control: str = CONTROL) -> dict[str, str]:
    """`drug_groups` from the set's obs."""
    obs = obs.loc[obs[DRUG].astype(str) != control].drop_duplicates(DRUG)
    first = obs.set_index(obs[DRUG].astype(str))
    if SMILES in obs and first[SMILES].notna().any():
        keys = {d: scaffold(s) if isinstance(s, str) else None for d, s in first[SMILES].items()}
        prefix = "scaffold"
    elif FAMILY in obs:
        keys = {d: None if pd.isna(f) else str(f) for d, f in first[FAMILY].items()}
        prefix = "family"
    else:
        raise BenchError(f"unseen_drug_families needs drug families: an obs column '{FAMILY}' or SMILES (--smiles)")
    return {d: f"{prefix}:{k}" if k is not None else f"drug:{d}" for d, k in keys.items()}


def family_leaks(split: Split, obs: pd.DataFrame) -> str | None:
    """The unseen-family rule: the unseen-drug rule, and no test drug has a family member in training."""
    groups = obs_groups(obs, split.control)
    trained = {groups[d] for d in split.drugs(obs, TRAIN)}
    leaked = [d for d in split.drugs(obs, TEST) if groups[d] in trained]
    return drug_leaks(split, obs) or (f"test drug(s) with a family member in training: {', '.join(leaked)}" if leaked else None)


@register_split("unseen_drug_families", "whole drug families (or scaffolds, with --smiles) held out; validation on other families",
                leaks=family_leaks)
def unseen_drug_families(
    adata: ad.AnnData,
    seed: int = 0,
    control: str = CONTROL,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    eligible: set[str] | None = None,
    fold: int | None = None,
    folds: int | None = None,
) -> Split:
    """Hold out seeded random whole families until they hold at least `test_fraction` of the drugs
    (test), then other families up to `val_fraction` (validation); the rest, and every control,
    is training. No test or validation drug has a family member in training. Only families whose
    every drug is `eligible` (has bulk profiles, where a bulk set is given) are held out. With
    `folds`, the test families are fold `fold` of a seeded K-fold partition of the eligible families
    (near-equal in drugs; K folds test each such drug once), validation families come from the others."""
    groups = drug_groups(adata, control)
    families = sorted(set(groups.values()))
    if eligible is not None:
        families = [f for f in families if all(d in eligible for d, g in groups.items() if g == f)]
    members = {f: [d for d, g in groups.items() if g == f] for f in families}
    wanted = {TEST: max(1, round(test_fraction * len(groups))), VAL: max(1, round(val_fraction * len(groups)))}
    held = {TEST: 0, VAL: 0}
    role: dict[str, str] = {}
    order = list(np.random.default_rng(seed).permutation(families))
    if folds:
        fold = check_folds("unseen_drug_families", fold, folds, len(families), "drug families")
        assigned = fold_of({f: len(members[f]) for f in families}, folds, np.random.default_rng(seed))
        role = {d: TEST for f in families if assigned[f] == fold for d in members[f]}
        held[TEST] = wanted[TEST] = len(role)
        order = list(np.random.default_rng([seed, fold]).permutation([f for f in families if assigned[f] != fold]))
    for family in order:
        r = next((r for r in (TEST, VAL) if held[r] < wanted[r]), None)
        if r is None:
            break
        role.update({d: r for d in members[family]})
        held[r] += len(members[family])
    if held[VAL] == 0 or len(role) == len(groups):
        among = "" if eligible is None else " whose drugs all have bulk profiles"
        raise BenchError(f"unseen_drug_families: {len(families)} drug families{among} are too few for test, validation and training")
    labels = adata.obs[DRUG].astype(str).map(lambda d: role_of(d, role))
    return Split("unseen_drug_families", pd.Series(labels.to_numpy(), index=adata.obs_names), seed=seed, control=control,
                 fold=fold if folds else None, folds=folds)
