"""The `unseen_drugs` split: whole drugs (all doses, all cell types) held out of training."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError, closest
from bench.schema import CONTROL, DRUG
from splits.base import TEST, TRAIN, VAL, Split, register_split

# Values of CPA/chemCPA split columns and the role each one plays here.
OBS_SPLIT_VALUES = {"train": TRAIN, "test": VAL, "ood": TEST}


@register_split("unseen_drugs", "drugs held out of single-cell training entirely; validation on other held-out drugs")
def unseen_drugs(
    adata: ad.AnnData,
    seed: int = 0,
    control: str = CONTROL,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    split_column: str | None = None,
) -> Split:
    """Hold out a seeded random `test_fraction` of drugs for testing and `val_fraction` for model
    selection; everything else (and every control) is training. With `split_column`, use the
    roles stored in that obs column instead (train/test/ood as in CPA files)."""
    if split_column is not None:
        return from_obs_column(adata, split_column, control=control)
    drugs = np.array(sorted(set(adata.obs[DRUG].astype(str)) - {control}))
    if len(drugs) < 3:
        raise BenchError(f"unseen_drugs needs at least 3 treated drugs, found {len(drugs)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(drugs)
    n_test = max(1, int(round(test_fraction * len(drugs))))
    n_val = max(1, int(round(val_fraction * len(drugs))))
    role = {d: TEST for d in order[:n_test]} | {d: VAL for d in order[n_test : n_test + n_val]}
    labels = adata.obs[DRUG].astype(str).map(lambda d: role.get(d, TRAIN))
    return Split("unseen_drugs", pd.Series(labels.to_numpy(), index=adata.obs_names), seed=seed, control=control)


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
    labels[adata.obs[DRUG].astype(str).to_numpy() == control] = TRAIN
    return Split("unseen_drugs", pd.Series(labels.to_numpy(), index=adata.obs_names), control=control)
