"""The unseen_drugs split: held-out drugs never reach training; deterministic; CPA-style columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.schema import CONTROL, DRUG
from splits import get_split
from splits.base import TEST, TRAIN, VAL


def test_held_out_drugs_are_absent_from_training(smoke):
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    train, val, test = (set(split.drugs(obs, r)) for r in (TRAIN, VAL, TEST))
    assert test and val and train
    assert not (test & train) and not (val & train) and not (test & val)
    drugs = obs[DRUG].astype(str).to_numpy()
    for d in test | val:  # every cell (all doses, all cell types) of a held-out drug is held out
        assert not split.mask(TRAIN)[drugs == d].any()
    assert split.mask(TRAIN)[drugs == CONTROL].all()  # controls are always available as input


def test_split_is_deterministic_in_its_seed(smoke):
    a = get_split("unseen_drugs", smoke.sc, seed=1)
    b = get_split("unseen_drugs", smoke.sc, seed=1)
    c = get_split("unseen_drugs", smoke.sc, seed=2)
    assert a.labels.equals(b.labels)
    assert a.drugs(smoke.sc.obs, TEST) != c.drugs(smoke.sc.obs, TEST)


def test_split_from_a_cpa_style_obs_column(smoke):
    sc = smoke.sc.copy()
    drugs = sc.obs[DRUG].astype(str)
    roles = np.where(drugs == "D001", "ood", np.where(drugs == "D002", "test", "train"))
    sc.obs["split_ood"] = pd.Categorical(roles)
    split = get_split("unseen_drugs", sc, split_column="split_ood")
    assert split.drugs(sc.obs, TEST) == ["D001"] and split.drugs(sc.obs, VAL) == ["D002"]


def test_bad_split_requests_are_clear_errors(smoke):
    with pytest.raises(BenchError, match="unknown split 'unseen_drug'.*did you mean 'unseen_drugs'"):
        get_split("unseen_drug", smoke.sc)
    sc = smoke.sc.copy()
    sc.obs["split_ood"] = "train"
    with pytest.raises(BenchError, match="no test conditions"):
        get_split("unseen_drugs", sc, split_column="split_ood")
    sc.obs["split_ood"] = "holdout"
    with pytest.raises(BenchError, match="value\\(s\\) \\['holdout'\\]"):
        get_split("unseen_drugs", sc, split_column="split_ood")
