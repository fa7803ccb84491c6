"""Files as their publishers write them (tests/layouts.py): scPerturb's sci-Plex3 with raw counts,
dose_value/dose_unit and duplicated symbols, run against the real L1000 plate in ../shared/data;
cmapR's Level 5 GCTX with `<b5>` doses; GEO's gene_info flags; drug names as the field spells them."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.drugs import match_drugs, name_keys
from bench.data.loaders import load_bulk, load_single_cell
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from layouts import ALIAS_ONLY, NOT_ON_PLATE, PLATE_DRUGS, SCIPLEX_DOSES, cmapr_level5_gctx, geo_gene_info, scperturb_sciplex3
from splits import get_split
from splits.base import TEST, TRAIN, VAL

DRUGS = PLATE_DRUGS + ALIAS_ONLY + NOT_ON_PLATE  # 29 sci-Plex3 drugs, 13 of them on the plate


@pytest.fixture(scope="module")
def plate(shared_data):
    return shared_data / "l1000" / "test_l1000.gct"


@pytest.fixture(scope="module")
def sciplex(plate, tmp_path_factory):
    genes = list(load_bulk(plate).var_names[:150]) + [f"LINC{i:05d}" for i in range(50)]
    return scperturb_sciplex3(tmp_path_factory.mktemp("scperturb") / "SrivatsanTrapnell2020_sciplex3.h5ad", genes, DRUGS)


def test_scperturb_layout_loads_without_options(sciplex):
    raw = ad.read_h5ad(sciplex)
    sc = load_single_cell(sciplex)
    info = sc.uns["bench_load"]
    assert info["dose_column"] == "dose_value" and info["raw_counts"] and info["duplicated_symbols"] == 4
    assert sorted(set(sc.obs.loc[sc.obs[DRUG] != CONTROL, DOSE])) == list(SCIPLEX_DOSES)  # four doses kept apart
    assert sc.var_names.is_unique and sc.n_vars == raw.n_vars - 4
    assert set(sc.obs[CELL_TYPE].astype(str)) == {"A549", "K562", "MCF7"}
    # duplicated symbols: counts summed; then scanpy's normalize_total(target_sum=1e4) and log1p
    import scanpy as sc_

    dense = raw.X.toarray()
    symbols = pd.Index(raw.var_names)
    summed = np.stack([dense[:, np.asarray(symbols == g)].sum(axis=1) for g in symbols.unique()], axis=1)
    merged = ad.AnnData(summed, obs=raw.obs)
    sc_.pp.normalize_total(merged, target_sum=1e4)
    sc_.pp.log1p(merged)
    np.testing.assert_allclose(sc.X.toarray(), merged.X, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_integer_counts_of_either_dtype_are_normalised_unless_refused(tmp_path, dtype, capsys):
    path = scperturb_sciplex3(tmp_path / "x.h5ad", [f"G{i}" for i in range(60)], ["Dasatinib", "Andarine", "AICAR"], dtype=dtype)
    sc = load_single_cell(path)
    assert sc.X.max() < 12 and sc.uns["bench_load"]["normalized"].startswith("per cell to 10,000")
    assert main(["check", "--sc", str(path), "--normalize", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "values look like raw counts" in err[0] and "--normalize none" in err[0]


def test_check_names_the_normalisation_and_the_eligible_drugs(sciplex, plate, capsys):
    assert main(["check", "--sc", str(sciplex), "--bulk", str(plate)]) == 0
    out, err = capsys.readouterr()
    assert "raw integer counts detected: normalised per cell to 10,000 counts, then log1p" in err
    assert "4 gene symbol(s) listed more than once" in err and "counts summed" in err
    assert "drugs: 13 of 29 single-cell drugs have bulk profiles" in err
    assert "column 'dose_value'" in out and "10, 100, 1000, 10000" in out
    assert "Crizotinib (PF-02341066) = crizotinib (alias or salt)" in out
    assert "Momelotinib (CYT387) = CYT387 (alias or salt)" in out and "Dasatinib = dasatinib (letter case)" in out
    split_lines = out.split("split unseen_drugs")[1]
    test_line = next(line for line in split_lines.splitlines() if line.strip().startswith("test"))
    held = [d for d in DRUGS if d in test_line]
    assert held and set(held) <= set(PLATE_DRUGS + ALIAS_ONLY)


def test_run_scores_knn_on_held_out_drugs_the_plate_has(sciplex, plate, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--sc", str(sciplex), "--bulk", str(plate), "--predictors", "knn,control_mean", "--out", str(out)]
    assert main(argv) == 0
    knn = json.loads((out / "runs/knn/seed0/result.json").read_text())
    assert knn["status"] == "ok", knn["error"]
    rows = pd.read_csv(out / "runs/knn/seed0/conditions.csv")
    assert set(rows["drug"]) <= set(PLATE_DRUGS + ALIAS_ONLY) and len(rows["drug"].unique()) >= 2
    assert sorted(rows["dose"].unique()) == list(SCIPLEX_DOSES)
    meta = json.loads((out / "run.json").read_text())
    summary = meta["split_summary"]
    assert summary["train_drugs"] == 29 - summary["test_drugs"] - summary["val_drugs"]
    assert set(summary["val_drug_names"]) <= set(PLATE_DRUGS + ALIAS_ONLY)


def test_cmapr_level5_gctx_with_r_escaped_micro_loads(tmp_path):
    symbols = [f"G{i}" for i in range(6)]
    sigs = [("BRD-K1", "trametinib", "A375", "10 <b5>M"), ("BRD-K1", "trametinib", "A375", "3 <b5>M"),
            ("BRD-K2", "dasatinib", "PC3", "500 nM"), ("BRD-K3", "venlafaxine", "PC3", "0.04 <b5>M")]
    values = np.arange(24, dtype=float).reshape(4, 6)
    path = cmapr_level5_gctx(tmp_path / "modzs_n4x6.gctx", symbols, list(range(1, 7)), sigs, values, landmark=[1, 1, 1, 1, 0, 1])
    bulk = load_bulk(path)
    assert bulk.uns["bench_load"]["l1000_level"] == 5
    assert list(bulk.var_names) == ["G0", "G1", "G2", "G3", "G5"]  # is_lm 0 dropped
    treated = bulk.obs[bulk.obs[DRUG] != CONTROL]
    assert treated[DOSE].tolist() == [10000.0, 3000.0, 500.0, 40.0]
    assert sorted(bulk.obs_names[bulk.obs[DRUG] == CONTROL]) == ["zero_control:A375", "zero_control:PC3"]
    np.testing.assert_array_equal(bulk.X[:4], values[:, [0, 1, 2, 3, 5]])


def test_geo_gene_info_landmark_flag_selects_landmarks(tmp_path):
    folder = tmp_path / "geo"
    folder.mkdir()
    entrez = [5720, 466, 6009, 2309]
    with h5py_file(folder / "GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n2x4.gctx") as fh:
        fh["0/DATA/0/matrix"] = np.ones((2, 4))
        fh["0/META/ROW/id"] = np.array([str(e) for e in entrez], dtype="S")
        fh["0/META/COL/id"] = np.array(["CPC006_A375_24H:BRD-K1:10", "CPC006_A375_24H:BRD-K2:10"], dtype="S")
    geo_gene_info(folder / "GSE92742_Broad_LINCS_gene_info.txt", entrez, ["PSME1", "ATF1", "RHEB", "FOXO3"], [1, 1, 0, 1])
    pd.DataFrame({"sig_id": ["CPC006_A375_24H:BRD-K1:10", "CPC006_A375_24H:BRD-K2:10"], "pert_id": ["BRD-K1", "BRD-K2"],
                  "pert_iname": ["trametinib", "DMSO"], "pert_type": ["trt_cp", "ctl_vehicle"], "cell_id": "A375",
                  "pert_dose": [10.0, -666], "pert_dose_unit": ["\u00b5M", "-666"], "pert_idose": ["10 \u00b5M", "-666"],
                  "distil_id": "x"}).to_csv(folder / "GSE92742_Broad_LINCS_sig_info.txt", sep="\t", index=False)
    bulk = load_bulk(folder / "GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n2x4.gctx")
    assert list(bulk.var_names) == ["PSME1", "ATF1", "FOXO3"]  # pr_is_lm 0 dropped
    assert bulk.obs[DOSE].tolist() == [10000.0, 0.0] and bulk.uns["bench_load"]["vehicle_signatures_replaced"] == 1


def test_side_car_doses_with_r_escaped_micro(tmp_path):
    """A GSE70138-style sig_info (doses only in pert_idose) whose µ was written by R as `<b5>`."""
    folder = tmp_path / "geo"
    folder.mkdir()
    ids = ["REP.A001_A549_24H:A03", "REP.A001_A549_24H:A04", "REP.A001_A549_24H:A05"]
    with h5py_file(folder / "GSE70138_Broad_LINCS_Level5_COMPZ_n3x2.gctx") as fh:
        fh["0/DATA/0/matrix"] = np.ones((3, 2))
        fh["0/META/ROW/id"] = np.array(["5720", "466"], dtype="S")
        fh["0/META/COL/id"] = np.array(ids, dtype="S")
    geo_gene_info(folder / "GSE70138_Broad_LINCS_gene_info_2017-03-06.txt", [5720, 466], ["PSME1", "ATF1"], [1, 1])
    pd.DataFrame({"sig_id": ids, "pert_id": ["BRD-K1", "BRD-K1", "BRD-K2"], "pert_iname": ["trametinib"] * 2 + ["dasatinib"],
                  "pert_type": "trt_cp", "cell_id": "A549", "pert_idose": ["10 <b5>M", "0.37 <b5>M", "500 nM"],
                  "pert_itime": "24 h", "distil_id": "x"}).to_csv(
        folder / "GSE70138_Broad_LINCS_sig_info_2017-03-06.txt", sep="\t", index=False)
    bulk = load_bulk(folder / "GSE70138_Broad_LINCS_Level5_COMPZ_n3x2.gctx")
    assert bulk.obs.loc[ids, DOSE].tolist() == pytest.approx([10000.0, 370.0, 500.0])


def h5py_file(path):
    import h5py

    return h5py.File(path, "w")


@pytest.mark.parametrize("sc_name, bulk_name", [("Crizotinib (PF-02341066)", "crizotinib"), ("Flavopiridol HCl", "flavopiridol"),
                                                ("Glesatinib?(MGCD265)", "MGCD-265"), ("PD0325901", "PD-0325901"),
                                                ("Roscovitine (Seliciclib,CYC202)", "seliciclib"), ("Withaferin A", "withaferin-a")])
def test_names_are_matched_as_the_field_writes_them(sc_name, bulk_name):
    assert match_drugs([sc_name, "Dasatinib"], [bulk_name, "dasatinib", "vorinostat"]) == {
        sc_name: (bulk_name, "alias or salt"), "Dasatinib": ("dasatinib", "letter case")}


def test_a_shared_key_that_names_two_drugs_matches_neither():
    assert "pf02341066" in name_keys("Crizotinib (PF-02341066)")
    assert match_drugs(["Ruxolitinib", "S-Ruxolitinib"], ["ruxolitinib"]) == {"Ruxolitinib": ("ruxolitinib", "letter case")}
    assert match_drugs(["Drug (X-100)", "Other (X100)"], ["x100"]) == {}


def test_molecules_match_where_names_do_not(shared_data):
    from bench.data.drugs import read_smiles_table

    trapnell = read_smiles_table(shared_data / "drugs" / "trapnell_drugs_smiles.csv")
    lincs = read_smiles_table(shared_data / "drugs" / "lincs_drugs_smiles.csv")
    plate = load_bulk(shared_data / "l1000" / "test_l1000.gct")
    ids = plate.obs.drop_duplicates(DRUG).set_index(DRUG)["pert_id"]
    bulk_smiles = {d: lincs[ids[d].casefold()] for d in ["TG-101348", "CYT387", "ruxolitinib"]}
    found = match_drugs(["Fedratinib", "Momelotinib", "S-Ruxolitinib"], list(bulk_smiles),
                        {d: trapnell[d.casefold()] for d in ["Fedratinib", "Momelotinib", "S-Ruxolitinib"]}, bulk_smiles)
    assert found["Fedratinib"] == ("TG-101348", "molecule") or found["Fedratinib"][0] == "TG-101348"
    assert found["Momelotinib"][0] == "CYT387"
    assert found["S-Ruxolitinib"] == ("ruxolitinib", "molecule (stereo ignored)")


def test_only_drugs_with_bulk_profiles_are_held_out(smoke):
    drugs = sorted(set(smoke.sc.obs[DRUG].astype(str)) - {CONTROL})
    eligible = set(drugs[:6])
    for seed in range(4):
        split = get_split("unseen_drugs", smoke.sc, seed=seed, eligible=eligible)
        assert set(split.drugs(smoke.sc.obs, TEST)) | set(split.drugs(smoke.sc.obs, VAL)) <= eligible
        assert set(drugs) - eligible <= set(split.drugs(smoke.sc.obs, TRAIN))
        every = get_split("unseen_drugs", smoke.sc, seed=seed, eligible=set(drugs))
        assert every.labels.equals(get_split("unseen_drugs", smoke.sc, seed=seed).labels)  # all eligible: unchanged


def test_partial_bulk_overlap_trains_every_bulk_predictor(sciplex, plate, tmp_path):
    """Training drugs the plate lacks do not stop PertBERT or cVAE; pre-training on the single-cell
    lines' bulk profiles, which the plate (A375 only) has none of, is a skip with the reason."""
    out = tmp_path / "run"
    argv = ["run", "--sc", str(sciplex), "--bulk", str(plate), "--predictors", "BERT,cVAE,BERT_transfer",
            "--epochs", "1", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    status = {p: json.loads((out / f"runs/{p}/seed0/result.json").read_text()) for p in ("BERT", "cVAE", "BERT_transfer")}
    assert status["BERT"]["status"] == "ok" and status["cVAE"]["status"] == "ok", status
    assert status["BERT_transfer"]["status"] == "skipped"
    assert "only 0 bulk profiles of the single-cell cell lines" in status["BERT_transfer"]["error"]


def test_check_says_when_a_file_carries_a_gene_selection(sciplex, capsys):
    assert main(["check", "--sc", str(sciplex)]) == 0
    out = capsys.readouterr().out
    assert "note: the file carries a gene selection (200 genes" in out and "held-out drugs helped choose" in out


def test_chemcpa_lincs_level3_with_categorical_obs_checks(tmp_path, capsys):
    """chemCPA's LINCS h5ad stores every obs column as a categorical (`pert_dose` '10.0' and
    `pert_dose_unit` 'um' too): read in nM, with notes on the columns chemCPA added beside L1000's."""
    from hostile_layouts import cells
    from layouts import chemcpa_lincs_level3

    drugs = ["control"] * 8 + [f"drug{i}" for i in range(5) for _ in range(4)] + ["BRDK7"] * 4
    sc = cells(tmp_path / "sc.h5ad", drugs=drugs)
    lincs = chemcpa_lincs_level3(tmp_path / "lincs_full.h5ad", [f"G{i}" for i in range(6)],
                                 [f"drug{i}" for i in range(5)] + ["BRD-K7"])
    bulk = load_bulk(lincs)
    assert sorted(set(bulk.obs[DOSE])) == [0.0, 1000.0, 20_000.0]
    notes = bulk.uns["bench_load"]["notes"]
    assert any("dose (nM) columns 'pert_dose' and 'dose_val' disagree" in n for n in notes), notes
    assert any("drug columns 'condition' and 'pert_iname' disagree on 6 row(s) (e.g. 'BRDK7' vs 'BRD-K7')" in n for n in notes), notes
    assert main(["check", "--sc", str(sc), "--bulk", str(lincs)]) == 0
    assert "lincs_full.h5ad: rows labelled 'DMSO' in column 'condition' (flagged 1 in column 'control') are read as controls" in capsys.readouterr().err
