"""Molecules of the generated drugs: valid, canonical, unique, deterministic SMILES whose scaffolds
are the drug families; the structure knob (`structure_weight`) makes similar molecules act alike
and leaves the data as it was at 0; files carrying SMILES columns fill obs `smiles`."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.data import synthetic_model  # where with_structure looks up structure_coefficients
from bench.data.drugs import SMILES, attach_smiles, molecule_keys, read_smiles_table
from bench.data.loaders import load_single_cell
from bench.data.molecules import SCAFFOLDS, generated_molecules, morgan_fingerprints, tanimoto
from bench.data.synthetic import config_for, generate
from bench.data.synthetic_model import draw_truth
from bench.data.synthetic_realistic import draw_realistic_truth
from bench.errors import BenchError
from bench.schema import CONTROL, DRUG
from splits.base import TEST, TRAIN, get_split
from splits.unseen_drug_families import drug_groups, scaffold


@pytest.fixture(scope="module")
def default_truth():
    return draw_truth(config_for("default", 0))[0]


def test_generated_smiles_are_valid_canonical_unique_and_drug_like(default_truth):
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    smiles = list(default_truth["smiles"])
    assert len(smiles) == 200 and len(set(smiles)) == 200
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    assert all(m is not None for m in mols)
    assert [Chem.MolToSmiles(m) for m in mols] == smiles  # canonical as written
    assert len({molecule_keys(s)[0] for s in smiles}) == 200  # distinct compounds, not only spellings
    weights = np.array([Descriptors.MolWt(m) for m in mols])
    assert 140 < weights.min() and weights.max() < 600 and 200 < np.median(weights) < 450


def test_molecules_are_deterministic_in_their_seed(default_truth):
    family = default_truth["drug_family"]
    first, again, other = (generated_molecules(200, family, s) for s in ([0, 4], [0, 4], [1, 4]))
    assert first == again and first != other
    assert first == list(default_truth["smiles"])  # the truth's molecules are these draws


@pytest.mark.parametrize("size, seed", [("smoke", 0), ("default", 0), ("default", 3)])
def test_drug_families_are_the_molecules_scaffolds(size, seed):
    truth = draw_truth(config_for(size, seed))[0]
    scaffolds = [scaffold(s) for s in truth["smiles"]]
    pairs = set(zip(truth["drug_family"].tolist(), scaffolds))
    assert None not in scaffolds
    assert len(pairs) == len({f for f, _ in pairs}) == len({s for _, s in pairs})  # one scaffold per family and back


def test_family_split_holds_out_the_families_through_scaffolds(smoke):
    groups = drug_groups(smoke.sc)
    assert all(g.startswith("scaffold:") for g in groups.values())
    treated = smoke.sc.obs[smoke.sc.obs[DRUG] != CONTROL].drop_duplicates(DRUG)
    family = dict(zip(treated[DRUG].astype(str), treated["drug_family"].astype(str)))
    by_family = {frozenset(d for d in family if family[d] == f) for f in family.values()}
    by_scaffold = {frozenset(d for d in groups if groups[d] == g) for g in groups.values()}
    assert by_family == by_scaffold
    split = get_split("unseen_drug_families", smoke.sc, seed=0)
    roles = split.labels[treated.index]
    role_of = dict(zip(treated[DRUG].astype(str), roles))
    for members in by_family:
        assert len({role_of[d] for d in members}) == 1
    assert {TEST, TRAIN} <= set(role_of.values())


def test_more_families_than_scaffolds_is_a_clear_error():
    with pytest.raises(BenchError, match=f"expected indices 0..{len(SCAFFOLDS) - 1}"):
        generated_molecules(3, np.array([0, 1, len(SCAFFOLDS)]), 0)
    with pytest.raises(BenchError, match="one family index per drug"):
        generated_molecules(3, np.array([0, 1]), 0)


def test_morgan_fingerprints_are_rdkit_bits_and_name_an_unreadable_smiles():
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    smiles = ["CCO", "c1ccc(Nc2ncnc3ccccc23)cc1"]
    fps = morgan_fingerprints(smiles, radius=2, n_bits=1024)
    assert fps.shape == (2, 1024) and fps.dtype == np.float32 and set(np.unique(fps)) == {0.0, 1.0}
    reference = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024).GetFingerprintAsNumPy(Chem.MolFromSmiles(smiles[1]))
    np.testing.assert_array_equal(fps[1], reference)
    np.testing.assert_allclose(np.diag(tanimoto(fps)), 1.0)
    with pytest.raises(BenchError, match=r"SMILES 'C1CC' \(entry 1\): not readable"):
        morgan_fingerprints(["CCO", "C1CC"])


@pytest.mark.parametrize("preset", ["easy", "realistic"])
def test_structure_weight_zero_computes_no_structure_and_one_changes_the_data(preset, monkeypatch):
    """At 0 the data are the generator's before drugs had molecules (tests/test_presets.py checks the
    easy preset's hashes); here: no structure map is even computed, and the knob moves the data."""
    def refuse(*args, **kwargs):
        raise AssertionError("a structure map was computed at structure_weight 0")

    sc1, bulk1 = generate("smoke", 0, preset, structure_weight=1.0)
    monkeypatch.setattr(synthetic_model, "structure_coefficients", refuse)
    sc0, bulk0 = generate("smoke", 0, preset, structure_weight=0.0)
    assert sc0.n_obs != sc1.n_obs or (sc0.X != sc1.X).nnz > 0
    assert not np.array_equal(bulk0.X, bulk1.X)
    assert sc0.uns["bench_dataset"]["structure_weight"] == 0.0 and bulk1.uns["bench_dataset"]["structure_weight"] == 1.0


def _similarity_correlations(truth: dict, latent: str) -> tuple[float, float]:
    """Correlation over drug pairs of fingerprint Tanimoto similarity with the cosine similarity of
    the drugs' latent vectors: over all pairs, and over pairs of one family."""
    sim = tanimoto(morgan_fingerprints(truth["smiles"]))
    unit = truth[latent] / np.linalg.norm(truth[latent], axis=1, keepdims=True)
    alike = unit @ unit.T
    upper = np.triu_indices(len(sim), 1)
    same = (truth["drug_family"][:, None] == truth["drug_family"][None, :])[upper]
    a, b = sim[upper], alike[upper]
    return float(np.corrcoef(a, b)[0, 1]), float(np.corrcoef(a[same], b[same])[0, 1])


@pytest.mark.parametrize("preset, latent", [("easy", "drug_latent"), ("realistic", "sc_latent"), ("realistic", "late_latent")])
def test_structure_weight_makes_similar_molecules_act_alike(preset, latent):
    """Families already share scaffolds and mechanisms, so at 0 the two similarities correlate
    through the family; at 1 they correlate clearly more, and within a family they start to."""
    cfg = config_for("default", 0)
    draw = (lambda c: draw_truth(c)[0]) if preset == "easy" else draw_realistic_truth
    truth = {w: draw(replace(cfg, structure_weight=w)) for w in (0.0, 0.5, 1.0)}
    if latent == "late_latent":  # only drugs with a high-dose programme have one
        has = np.abs(truth[0.0][latent]).sum(axis=1) > 0
        truth = {w: {**t, latent: t[latent][has], "smiles": t["smiles"][has], "drug_family": t["drug_family"][has]}
                 for w, t in truth.items()}
    (all0, within0), (all5, _), (all1, within1) = (_similarity_correlations(truth[w], latent) for w in (0.0, 0.5, 1.0))
    assert all1 > all0 + 0.2 and all0 < all5 < all1, (all0, all5, all1)
    assert within1 > within0 + 0.3, (within0, within1)


def test_structure_keeps_the_spread_and_potency_of_drug_effects():
    cfg = config_for("default", 0)
    (t0, p0), (t1, p1) = (draw_truth(replace(cfg, structure_weight=w)) for w in (0.0, 1.0))
    np.testing.assert_array_equal(p0, p1)  # potency (and inert drugs) unchanged
    for key in ("drug_family", "ec50", "hill", "max_responders", "programs"):
        np.testing.assert_array_equal(t0[key], t1[key])
    per_potency = [np.linalg.norm(t["drug_latent"], axis=1) / p for t, p in ((t0, p0), (t1, p1))]
    assert 0.85 < per_potency[1].mean() / per_potency[0].mean() < 1.15


def test_structure_weight_outside_zero_to_one_is_a_clear_error():
    with pytest.raises(BenchError, match="structure_weight 1.5: expected a share between 0 and 1"):
        generate("smoke", 0, structure_weight=1.5)


@pytest.mark.parametrize("preset", ["easy", "realistic"])
def test_both_generated_sets_carry_each_treated_drugs_smiles(preset):
    sc, bulk = generate("smoke", 0, preset)
    truth = sc.uns["bench_truth"]
    smiles = dict(zip(truth["drugs"], truth["smiles"]))
    assert sc.uns["bench_dataset"]["structure_weight"] == config_for("smoke").structure_weight
    for adata in (sc, bulk):
        obs = adata.obs
        assert isinstance(obs[SMILES].dtype, pd.CategoricalDtype)
        control = (obs[DRUG] == CONTROL).to_numpy()
        assert obs.loc[control, SMILES].isna().all() and obs.loc[~control, SMILES].notna().all()
        treated = obs.loc[~control, [DRUG, SMILES]].astype(str).drop_duplicates()
        assert treated[DRUG].is_unique and all(smiles[d] == s for d, s in treated.itertuples(index=False))


@pytest.mark.parametrize("column", ["SMILES", "canonical_smiles"])
def test_a_files_smiles_column_becomes_obs_smiles(column, tmp_path):
    rng = np.random.default_rng(0)
    drug = np.array(["control", "Dasatinib", "Crizotinib"])[np.arange(90) % 3]
    written = {"control": "CS(C)=O", "Dasatinib": "Cc1nc(Nc2ncc(s2)C(=O)Nc2c(C)cccc2Cl)cc(n1)N1CCN(CCO)CC1",
               "Crizotinib": ""}  # the vehicle's molecule, a drug's, and one left empty
    obs = pd.DataFrame({"condition": drug, "cell_type": "A549", "dose": np.where(drug == "control", 0.0, 100.0),
                        column: [written[d] for d in drug]}, index=[f"c{i}" for i in range(90)])
    obs = obs.astype({"condition": "category", "cell_type": "category", column: "category"})  # as chemCPA's files store them
    path = tmp_path / "cells.h5ad"
    ad.AnnData(np.log1p(rng.poisson(2.0, (90, 30))).astype(np.float32), obs=obs,
               var=pd.DataFrame(index=[f"G{i}" for i in range(30)])).write_h5ad(path)
    loaded = load_single_cell(path).obs
    assert isinstance(loaded[SMILES].dtype, pd.CategoricalDtype)
    by_drug = loaded.groupby(DRUG, observed=True)[SMILES].first()
    assert by_drug["Dasatinib"] == written["Dasatinib"]
    assert pd.isna(by_drug[CONTROL]) and pd.isna(by_drug["Crizotinib"])  # no molecule for the vehicle, none for ""


def test_smiles_table_by_lincs_pert_id(tmp_path):
    table_path = tmp_path / "lincs_drugs.csv"
    table_path.write_text("BRD-K49328571,Cc1nc(Nc2ncc(s2)C(=O)Nc2c(C)cccc2Cl)cc(n1)N1CCN(CCO)CC1\nBRD-A00100033,CCO\n")
    table = read_smiles_table(table_path)
    obs = pd.DataFrame({DRUG: ["dasatinib-like", CONTROL, "unlisted"], "pert_id": ["BRD-K49328571", "DMSO", "BRD-X"]},
                       index=["p0", "p1", "p2"])
    bulk = ad.AnnData(np.zeros((3, 2), dtype=np.float32), obs=obs)
    assert attach_smiles(bulk, table) == 1  # 'unlisted' has no SMILES
    assert bulk.obs.loc["p0", SMILES] == table["brd-k49328571"] and bulk.obs.loc[["p1", "p2"], SMILES].isna().all()


def test_a_combination_is_matched_by_name_only_not_by_one_molecule():
    from bench.data.drugs import match_drugs

    sc_smiles = {"Alpha": "CCOc1ccccc1", "Beta+Gamma": "CCN"}
    bulk_smiles = {"alpha-1": "CCOc1ccccc1", "delta": "CCN"}
    found = match_drugs(["Alpha", "Beta+Gamma"], ["alpha-1", "delta"], sc_smiles, bulk_smiles)
    assert found == {"Alpha": ("alpha-1", "molecule")}
