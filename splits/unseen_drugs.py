"""The `unseen_drugs` split: whole drugs (all doses, all cell types) held out of training. A drug
combination (`A+B`) is held out with any drug it contains, so a held-out drug never reaches
training inside a combination."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.combinations import components, is_combination
from bench.errors import BenchError, closest
from bench.schema import CONTROL, DRUG
from splits.base import TEST, TRAIN, VAL, Split, check_folds, drug_leaks, fold_of, register_split, role_of

# Values of CPA/chemCPA split columns and the role each one plays here.
OBS_SPLIT_VALUES = {"train": TRAIN, "test": VAL, "ood": TEST}


@register_split("unseen_drugs", "drugs held out of single-cell training entirely; validation on other held-out drugs",
                leaks=drug_leaks)
def unseen_drugs(
    adata: ad.AnnData,
    seed: int = 0,
    control: str = CONTROL,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    split_column: str | None = None,
    eligible: set[str] | None = None,
    fold: int | None = None,
    folds: int | None = None,
) -> Split:
    """Hold out a seeded random `test_fraction` of drugs for testing and `val_fraction` for model
    selection (as many as are tested by default: a validation set of 4 drugs selected CPA at epochs
    2-6 and chemCPA at epoch 1); everything else (and every control) is training. Only `eligible` drugs (those with
    bulk profiles, where a bulk set is given) are held out: the others stay in training. With
    `folds`, the test drugs are fold `fold` of a seeded K-fold partition of the eligible drugs (K
    folds test each drug once) and validation drugs, at least as many as the fold's, are drawn from
    the other folds. With
    `split_column`, use the roles stored in that obs column instead (train/test/ood as in CPA files)."""
    if split_column is not None:
        return from_obs_column(adata, split_column, control=control)
    labels = adata.obs[DRUG].astype(str)
    names = sorted(set(labels) - {control})
    drugs = np.array(sorted({d for name in names for d in components(name)
                             if eligible is None or d in eligible}))
    if len(drugs) < 3:
        among = "" if eligible is None else " with bulk profiles"
        raise BenchError(f"unseen_drugs needs at least 3 treated drugs{among} to hold out, found {len(drugs)}")
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(drugs))))
    if folds:
        fold = check_folds("unseen_drugs", fold, folds, len(drugs))
        assigned = fold_of({str(d): 1 for d in drugs}, folds, rng)
        test = [d for d in drugs if assigned[d] == fold]
        n_val = max(n_val, len(test))
        rest = np.random.default_rng([seed, fold]).permutation([d for d in drugs if assigned[d] != fold])
        held = {d: TEST for d in test} | {d: VAL for d in rest[:n_val]}
    else:
        order = rng.permutation(drugs)
        n_test = max(1, int(round(test_fraction * len(drugs))))
        held = {d: TEST for d in order[:n_test]} | {d: VAL for d in order[n_test : n_test + n_val]}
    role = {name: role_of(name, held) for name in names}
    roles = labels.map(lambda d: role.get(d, TRAIN))
    return Split("unseen_drugs", pd.Series(roles.to_numpy(), index=adata.obs_names), seed=seed, control=control,
                 fold=fold if folds else None, folds=folds)


def from_obs_column(adata: ad.AnnData, column: str, control: str = CONTROL) -> Split:
    """A split stored in an obs column with values train/test/ood: `ood` rows are the test set,
    `test` rows the validation set. Controls are always available for training and input."""
    if column not in adata.obs:
        raise BenchError(f"split column '{column}' not in obs{closest(column, adata.obs.columns)}")
    values = adata.obs[column].astype(str)
    unknown = sorted(set(values) - set(OBS_SPLIT_VALUES))
    if unknown:
        raise BenchError(f"split column '{column}' has value(s) {unknown}: expected train, test or ood")
    labels = values.map(OBS_SPLIT_VALUES)
    drugs = adata.obs[DRUG].astype(str)
    labels[drugs.to_numpy() == control] = TRAIN
    if any(is_combination(d) for d in drugs.unique()):
        _check_combinations(pd.DataFrame({"drug": drugs.to_numpy(), "role": labels.to_numpy()}), column)
    return Split("unseen_drugs", pd.Series(labels.to_numpy(), index=adata.obs_names), control=control)


def _check_combinations(roles: pd.DataFrame, column: str) -> None:
    """A stored split must hold a training combination's drugs in training too."""
    pairs = roles.drop_duplicates()
    held = {d: r for d, r in pairs.itertuples(index=False) if r != TRAIN and len(components(d)) == 1}
    leaks = sorted(d for d, r in pairs.itertuples(index=False) if r == TRAIN and role_of(d, held) != TRAIN)
    if leaks:
        raise BenchError(f"split column '{column}': training combination(s) {', '.join(leaks[:3])} contain a held-out "
                         "drug; hold each combination out with its drugs")
