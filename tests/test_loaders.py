"""Loaders: the real L1000 plate (GCT and GCTX), side-cars, and the CPA/chemCPA h5ad layouts."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.gct import read_gct, read_gctx
from bench.data.loaders import ObsKeys, load_bulk, load_single_cell
from bench.schema import CELL_TYPE, CONTROL, DE_UNS_KEY, DOSE, DRUG


def test_gct_and_gctx_of_the_real_plate_agree(shared_data):
    gct = read_gct(shared_data / "l1000" / "test_l1000.gct")
    gctx = read_gctx(shared_data / "l1000" / "test_l1000_highprecision.gctx")
    assert gct.shape == gctx.shape == (377, 978)
    assert list(gct.obs_names) == list(gctx.obs_names) and list(gct.var_names) == list(gctx.var_names)
    assert gct.obs["pert_dose"].isna().sum() == 26  # -666 for the DMSO wells
    assert 3 < float(np.median(gct.X)) < 15  # level 3: log2 expression
    assert abs(float(np.median(gctx.X))) < 1  # level 4: per-plate z-scores


@pytest.mark.parametrize("name", ["test_l1000.gct", "test_l1000_highprecision.gctx"])
def test_l1000_becomes_a_canonical_bulk_set(shared_data, name):
    bulk = load_bulk(shared_data / "l1000" / name)
    assert (bulk.obs[DRUG] == CONTROL).sum() == 26
    assert set(bulk.obs[CELL_TYPE]) == {"A375"}
    treated = bulk.obs[bulk.obs[DRUG] != CONTROL]
    assert sorted(treated[DOSE].unique()) == pytest.approx([40, 120, 370, 1110, 3330, 10000], rel=0.02)  # µM -> nM
    assert {"Trametinib", "Dasatinib"} & set(bulk.obs[DRUG].astype(str)) or treated[DRUG].nunique() == 59
    assert "PSME1" in bulk.var_names and bulk.var_names.is_unique


def test_gctx_side_cars_supply_metadata_and_symbols(shared_data, tmp_path):
    """GEO layout: a bare matrix keyed by ids, metadata in inst_info and gene_info beside it."""
    import h5py

    full = read_gctx(shared_data / "l1000" / "test_l1000_highprecision.gctx")
    ids = list(full.var["pr_gene_id"].astype(int).astype(str)) + ["900001", "900002"]  # + 2 inferred genes
    with h5py.File(tmp_path / "level3.gctx", "w") as fh:
        fh["0/DATA/0/matrix"] = np.hstack([full.X, np.full((full.n_obs, 2), 99.0, dtype=np.float32)])
        fh["0/META/COL/id"] = np.array(full.obs_names, dtype="S")
        fh["0/META/ROW/id"] = np.array(ids, dtype="S")
    inst = full.obs[["pert_iname", "pert_type", "cell_id", "pert_dose"]].fillna(-666).rename_axis("inst_id").reset_index()
    inst.to_csv(tmp_path / "GSE_inst_info.txt", sep="\t", index=False)
    symbols = list(full.var["pr_gene_symbol"]) + ["INF1", "INF2"]
    genes = pd.DataFrame({"pr_gene_id": ids, "pr_gene_symbol": symbols, "pr_is_lmark": ["Y"] * full.n_vars + ["N", "N"]})
    genes.to_csv(tmp_path / "GSE_gene_info.txt", sep="\t", index=False)
    bulk = load_bulk(tmp_path / "level3.gctx")
    direct = load_bulk(shared_data / "l1000" / "test_l1000_highprecision.gctx")
    assert list(bulk.var_names) == list(direct.var_names)  # landmarks only, as symbols
    np.testing.assert_array_equal(bulk.X, direct.X)
    assert (bulk.obs[DRUG].astype(str).to_numpy() == direct.obs[DRUG].astype(str).to_numpy()).all()
    np.testing.assert_allclose(bulk.obs[DOSE], direct.obs[DOSE])


def test_gctx_is_read_in_sample_blocks(shared_data, monkeypatch):
    import bench.data.gct as gct

    path = shared_data / "l1000" / "test_l1000_highprecision.gctx"
    whole = gct.read_gctx(path)
    monkeypatch.setattr(gct, "BLOCK_ROWS", 50)
    blocks = gct.read_gctx(path, var_hook=lambda var: var.iloc[::2])
    assert blocks.X.dtype == np.float32 and blocks.shape == (377, 489)
    np.testing.assert_array_equal(blocks.X, whole.X[:, ::2])
    assert list(blocks.var_names) == list(whole.var_names[::2])


def cpa_layout(sc: ad.AnnData) -> ad.AnnData:
    """The smoke single-cell set written the way CPA/chemCPA prepare sci-Plex3."""
    obs = sc.obs
    drug = obs[DRUG].astype(str)
    out = ad.AnnData(sc.X.copy(), var=pd.DataFrame(index=sc.var_names))
    out.obs_names = sc.obs_names
    out.obs["condition"] = pd.Categorical(drug)
    out.obs["cell_type"] = pd.Categorical(obs[CELL_TYPE].astype(str))
    out.obs["dose_val"] = obs[DOSE].to_numpy() / 10_000.0
    out.obs["control"] = (drug == CONTROL).astype(int).to_numpy()
    out.obs["cov_drug_dose_name"] = [f"{c}_{d}_{v:g}" for c, d, v in zip(out.obs["cell_type"], drug, out.obs["dose_val"])]
    out.obs["split_ood_finetuning"] = np.where(drug == "D003", "ood", np.where(drug == "D004", "test", "train"))
    genes = list(sc.var_names)
    out.uns["rank_genes_groups_cov"] = {k: genes[:50] for k in set(out.obs["cov_drug_dose_name"]) if "control" not in k}
    return out


def lincs_layout(bulk: ad.AnnData) -> ad.AnnData:
    out = bulk.copy()
    drug = bulk.obs[DRUG].astype(str)
    out.obs = pd.DataFrame({
        "pert_iname": np.where(drug == CONTROL, "DMSO", drug),
        "cell_id": bulk.obs[CELL_TYPE].astype(str).to_numpy(),
        "pert_dose": bulk.obs[DOSE].to_numpy() / 1000.0,  # µM
        "control": (drug == CONTROL).astype(int).to_numpy(),
    }, index=bulk.obs_names)
    return out


def test_cpa_layout_loads_with_doses_controls_and_de_lists(smoke, tmp_path):
    cpa_layout(smoke.sc).write_h5ad(tmp_path / "sciplex.h5ad")
    sc = load_single_cell(tmp_path / "sciplex.h5ad")
    np.testing.assert_allclose(sc.obs[DOSE].to_numpy(), smoke.sc.obs[DOSE].to_numpy())  # dose_val x 10,000
    assert (sc.obs[DRUG].astype(str) == smoke.sc.obs[DRUG].astype(str)).all()
    de = sc.uns[DE_UNS_KEY]
    assert set(de) == {f"{c}_{d}" for c in ("CL00", "CL01", "CL02") for d in [f"D{i:03d}" for i in range(12)]}
    assert de["CL00_D001"] == list(smoke.sc.var_names[:50])


def test_run_on_user_files_with_a_stored_split(smoke, tmp_path):
    cpa_layout(smoke.sc).write_h5ad(tmp_path / "sciplex.h5ad")
    lincs_layout(smoke.bulk).write_h5ad(tmp_path / "lincs.h5ad")
    out = tmp_path / "run"
    argv = ["run", "--sc", str(tmp_path / "sciplex.h5ad"), "--bulk", str(tmp_path / "lincs.h5ad"),
            "--split-column", "split_ood_finetuning", "--predictors", "knn,control_mean,train_mean,random", "--out", str(out)]
    assert main(argv) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["split_summary"]["test_drug_names"] == ["D003"] and meta["split_summary"]["val_drug_names"] == ["D004"]
    result = {p: json.loads((out / f"runs/{p}/seed0/result.json").read_text()) for p in ("knn", "control_mean", "train_mean", "random")}
    assert result["knn"]["status"] == "ok"
    floors = [result[p]["val_selected"]["delta"] for p in ("control_mean", "random")]
    assert result["knn"]["val_selected"]["delta"] > max(floors) + 0.03  # bulk neighbours carry real signal
    # (train_mean is no floor here: on one test drug whose effect shares structure with the training drugs' it can lead)


def test_explicit_columns_for_any_h5ad(smoke, tmp_path):
    sc = smoke.sc.copy()
    del sc.uns["bench_truth"]
    sc.obs = sc.obs.rename(columns={DRUG: "treatment", CELL_TYPE: "line", DOSE: "nM"})
    sc.obs["treatment"] = sc.obs["treatment"].astype(str).replace({CONTROL: "vehicle"})
    sc.write_h5ad(tmp_path / "any.h5ad")
    loaded = load_single_cell(tmp_path / "any.h5ad", ObsKeys("treatment", "line", "nM", "vehicle"))
    assert (loaded.obs[DRUG] == "vehicle").sum() == (smoke.sc.obs[DRUG] == CONTROL).sum()


def test_held_out_drug_without_bulk_profiles_is_named(smoke, tmp_path, capsys):
    cpa_layout(smoke.sc).write_h5ad(tmp_path / "sciplex.h5ad")
    bulk = lincs_layout(smoke.bulk)
    bulk[bulk.obs["pert_iname"] != "D003"].copy().write_h5ad(tmp_path / "lincs.h5ad")
    out = tmp_path / "run"
    argv = ["run", "--sc", str(tmp_path / "sciplex.h5ad"), "--bulk", str(tmp_path / "lincs.h5ad"),
            "--split-column", "split_ood_finetuning", "--predictors", "knn,control_mean", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "held-out drug(s) absent from the bulk set: D003" in err and "drugs: 11 of 12 single-cell drugs" in err
    assert json.loads((out / "run.json").read_text())["data"]["sc_drugs_in_bulk"] == 11
    knn = json.loads((out / "runs/knn/seed0/result.json").read_text())
    assert knn["status"] == "skipped" and "needs bulk profiles of every held-out drug; none for D003" in knn["error"]
    assert json.loads((out / "runs/control_mean/seed0/result.json").read_text())["status"] == "ok"


def test_latin1_gct_with_micro_sign_units(shared_data, tmp_path):
    """An older GCT in Latin-1, its dose units written `µM` (the byte 0xB5)."""
    lines = (shared_data / "l1000" / "test_l1000.gct").read_text().splitlines(keepends=True)
    lines = [line.replace("\tum", "\t\u00b5M") if line.startswith("pert_dose_unit\t") else line for line in lines]
    path = tmp_path / "latin1.gct"
    path.write_bytes("".join(lines).encode("latin-1"))
    assert b"\t\xb5M\t" in path.read_bytes()
    bulk, direct = load_bulk(path), load_bulk(shared_data / "l1000" / "test_l1000.gct")
    np.testing.assert_allclose(bulk.obs[DOSE], direct.obs[DOSE])
    assert bulk.obs.loc[bulk.obs[DRUG] != CONTROL, "pert_dose"].str.endswith("\u00b5M").all()
