"""The drug hold-out splits: held-out drugs (unseen_drugs) or whole drug families and scaffolds
(unseen_drug_families) never reach training; deterministic; CPA-style columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.schema import CONTROL, DRUG, FAMILY
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


def _families(split, obs, role, family):
    return {family[d] for d in split.drugs(obs, role)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_families_have_no_member_in_training(smoke, seed):
    split = get_split("unseen_drug_families", smoke.sc, seed=seed)
    obs = smoke.sc.obs
    treated = obs[obs[DRUG] != CONTROL]
    family = dict(zip(treated[DRUG].astype(str), treated[FAMILY].astype(str)))
    train, val, test = (_families(split, obs, r, family) for r in (TRAIN, VAL, TEST))
    assert test and val and train
    assert not (test & train) and not (val & train) and not (val & test)  # validation drugs come from other families
    drugs = obs[DRUG].astype(str).to_numpy()
    assert split.mask(TRAIN)[drugs == CONTROL].all()
    assert len(split.drugs(obs, TEST)) >= round(0.2 * len(family))


def test_family_split_is_deterministic_in_its_seed(smoke):
    a, b = (get_split("unseen_drug_families", smoke.sc, seed=4) for _ in range(2))
    assert a.labels.equals(b.labels) and a.name == "unseen_drug_families"
    others = {tuple(get_split("unseen_drug_families", smoke.sc, seed=s).drugs(smoke.sc.obs, TEST)) for s in range(5)}
    assert len(others) > 1


# Four ring systems (benzene, pyridine, naphthalene, cyclohexane) and one acyclic molecule.
SMILES_BY_SCAFFOLD = {
    "c1ccccc1": ["Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1"],
    "c1ccncc1": ["Cc1ccncc1", "Oc1ccncc1", "Clc1ccncc1"],
    "c1ccc2ccccc2c1": ["Cc1ccc2ccccc2c1", "Oc1ccc2ccccc2c1"],
    "C1CCCCC1": ["CC1CCCCC1", "OC1CCCCC1", "NC1CCCCC1"],
    None: ["CCO"],
}


def test_with_smiles_drugs_are_grouped_by_scaffold(smoke):
    from splits.unseen_drug_families import drug_groups, scaffold

    sc = smoke.sc.copy()
    drugs = sorted(set(sc.obs[DRUG].astype(str)) - {CONTROL})
    pairs = [(core, smi) for core, smiles in SMILES_BY_SCAFFOLD.items() for smi in smiles]
    assert len(pairs) == len(drugs)
    assert all(scaffold(smi) == core for core, smi in pairs)
    table = dict(zip(drugs, [smi for _, smi in pairs]))
    sc.obs["smiles"] = sc.obs[DRUG].astype(str).map(table)
    core_of = dict(zip(drugs, [core for core, _ in pairs]))
    groups = drug_groups(sc)
    assert len(set(groups.values())) == 5  # scaffolds, not the generator's families
    for seed in range(4):
        split = get_split("unseen_drug_families", sc, seed=seed)
        train = {core_of[d] for d in split.drugs(sc.obs, TRAIN)}
        held = {core_of[d] for r in (TEST, VAL) for d in split.drugs(sc.obs, r)}
        assert not (train & held - {None})


def test_family_split_needs_families(smoke):
    sc = smoke.sc.copy()
    del sc.obs[FAMILY], sc.obs["smiles"]  # the generated drugs carry molecules: scaffolds would group them
    with pytest.raises(BenchError, match="needs drug families"):
        get_split("unseen_drug_families", sc)
    sc.obs[FAMILY] = "F00"
    with pytest.raises(BenchError, match="1 drug families are too few"):
        get_split("unseen_drug_families", sc)
