"""L1000 Level 5: a GCTX of signatures keyed by sig_id with a GEO sig_info side-car (GSE92742 and
GSE70138 columns, doses written out), built from the real plate in ../shared/data/l1000."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.gct import read_gctx
from bench.data.loaders import load_bulk
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from predictors.base import Task
from predictors.knn_bulk import KnnBulk

PLATE = "test_l1000_highprecision.gctx"  # Level 4 z-scores: one signature per well here
SCIPLEX_DRUGS = ["Crizotinib", "Dasatinib", "Trametinib", "Ruxolitinib", "Tozasertib"]


def write_level5(shared_data: Path, folder: Path, columns: str = "GSE70138", encoding: str = "utf-8") -> Path:
    """The plate as a bare Level 5 GCTX (sig_id columns, Entrez rows) with sig_info and gene_info
    beside it; doses only written out (`10 µM`) as GSE70138 has them, or also as numbers + unit."""
    plate = read_gctx(shared_data / "l1000" / PLATE)
    sig_ids = [i.replace("_X1_B19", "") for i in plate.obs_names]
    entrez = list(plate.var["pr_gene_id"].astype(int).astype(str))
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "level5.gctx", "w") as fh:
        fh["0/DATA/0/matrix"] = plate.X
        fh["0/META/COL/id"] = np.array(sig_ids, dtype="S")
        fh["0/META/ROW/id"] = np.array(entrez, dtype="S")
    obs = plate.obs
    info = pd.DataFrame({"sig_id": sig_ids, "pert_id": obs["pert_id"].to_numpy(), "pert_iname": obs["pert_iname"].to_numpy(),
                         "pert_type": obs["pert_type"].to_numpy(), "cell_id": obs["cell_id"].to_numpy()})
    if columns == "GSE92742":
        info["pert_dose"] = obs["pert_dose"].fillna(-666).to_numpy()
        info["pert_dose_unit"] = np.where(obs["pert_dose"].isna(), "-666", "um")
    info["pert_idose"] = ["-666" if pd.isna(d) else f"{d:g} \u00b5M" for d in obs["pert_dose"]]
    info["pert_itime"] = "24 h"
    info.to_csv(folder / f"{columns}_Broad_LINCS_sig_info.txt", sep="\t", index=False, encoding=encoding)
    genes = pd.DataFrame({"pr_gene_id": entrez, "pr_gene_symbol": plate.var["pr_gene_symbol"].to_numpy(), "pr_is_lmark": "Y"})
    genes.to_csv(folder / "GSE_gene_info.txt", sep="\t", index=False)
    return folder / "level5.gctx"


@pytest.mark.parametrize("columns, encoding", [("GSE70138", "utf-8"), ("GSE70138", "latin-1"), ("GSE92742", "utf-8")])
def test_level5_signatures_load_with_zero_controls(shared_data, tmp_path, columns, encoding):
    bulk = load_bulk(write_level5(shared_data, tmp_path, columns, encoding))
    direct = load_bulk(shared_data / "l1000" / PLATE)  # the same plate read as Level 4
    assert bulk.uns["bench_load"]["l1000_level"] == 5 and bulk.uns["bench_load"]["vehicle_signatures_replaced"] == 26
    ctrl = (bulk.obs[DRUG] == CONTROL).to_numpy()
    assert ctrl.sum() == 1 and bulk.obs_names[ctrl][0] == "zero_control:A375"
    assert not bulk.X[ctrl].any()  # signatures are changes from control already
    treated = direct[(direct.obs[DRUG] != CONTROL).to_numpy()]
    np.testing.assert_array_equal(bulk.X[~ctrl], treated.X)
    np.testing.assert_allclose(bulk.obs.loc[~ctrl, DOSE], treated.obs[DOSE])  # `10 µM` -> 10,000 nM
    assert (bulk.obs.loc[~ctrl, DRUG].astype(str).to_numpy() == treated.obs[DRUG].astype(str).to_numpy()).all()


def test_level3_and_4_keep_their_vehicle_profiles(shared_data):
    for name in ("test_l1000.gct", PLATE):
        bulk = load_bulk(shared_data / "l1000" / name)
        assert "l1000_level" not in bulk.uns["bench_load"] and (bulk.obs[DRUG] == CONTROL).sum() == 26


def test_the_side_car_is_the_one_matching_the_column_ids(shared_data, tmp_path):
    """A GEO folder holds both Level 3 and Level 5 side-cars, possibly gzipped."""
    path = write_level5(shared_data, tmp_path)
    sig_info = tmp_path / "GSE70138_Broad_LINCS_sig_info.txt"
    pd.read_csv(sig_info, sep="\t").to_csv(tmp_path / "GSE70138_Broad_LINCS_sig_info.txt.gz", sep="\t", index=False)
    sig_info.unlink()
    inst = pd.DataFrame({"inst_id": ["other:A01", "other:A02"], "pert_iname": "x", "cell_id": "A375", "pert_dose": 1.0})
    inst.to_csv(tmp_path / "GSE70138_Broad_LINCS_inst_info.txt", sep="\t", index=False)
    bulk = load_bulk(path)
    assert bulk.uns["bench_load"]["l1000_level"] == 5 and bulk.n_obs == 351 + 1


def test_non_compound_signatures_are_dropped_and_counted(shared_data, tmp_path):
    path = write_level5(shared_data, tmp_path)
    info_path = tmp_path / "GSE70138_Broad_LINCS_sig_info.txt"
    info = pd.read_csv(info_path, sep="\t")
    info.loc[:9, ["pert_type", "pert_idose"]] = ["trt_sh", "1 \u00b5L"]  # shRNA wells: not molar, not compounds
    info.to_csv(info_path, sep="\t", index=False)
    bulk = load_bulk(path)
    assert bulk.uns["bench_load"]["non_compound_profiles_dropped"] == 10
    assert bulk.n_obs == 377 - 10 - 26 + 4 + 1 and (bulk.obs[DRUG] != CONTROL).sum() == 377 - 26 - 6


def test_knn_signatures_of_level5_are_the_signatures_themselves(shared_data, tmp_path, smoke):
    bulk = load_bulk(write_level5(shared_data, tmp_path))
    knn = KnnBulk()
    knn.fit(Task(train=smoke.sc, bulk=bulk, test_conditions=[], val_conditions=[]))
    rows = (bulk.obs[DRUG] == "trametinib").to_numpy()
    np.testing.assert_allclose(knn._signature("trametinib", "A375"), bulk.X[rows].mean(axis=0), rtol=1e-6)


@pytest.fixture
def sciplex_on_plate_genes(shared_data, tmp_path) -> Path:
    """A small single-cell set (A375) on 200 of the plate's landmark genes, five drugs the plate has."""
    genes = list(load_bulk(shared_data / "l1000" / "test_l1000.gct").var_names[:200])
    rng = np.random.default_rng(0)
    drug = np.array(["control"] + SCIPLEX_DRUGS)[np.arange(600) % 6]
    x = np.log1p(rng.poisson(2.0, (600, 200))).astype(np.float32)
    obs = pd.DataFrame({"condition": drug, CELL_TYPE: "A375", "dose": np.where(drug == "control", "", "1 µM")},
                       index=[f"c{i}" for i in range(600)])
    path = tmp_path / "sciplex.h5ad"
    ad.AnnData(x, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)
    return path


def test_knn_runs_on_a_level5_bulk_set(shared_data, sciplex_on_plate_genes, tmp_path):
    bulk = write_level5(shared_data, tmp_path / "geo")
    out = tmp_path / "run"
    argv = ["run", "--sc", str(sciplex_on_plate_genes), "--bulk", str(bulk), "--predictors", "knn,control_mean", "--out", str(out)]
    assert main(argv) == 0
    knn = json.loads((out / "runs/knn/seed0/result.json").read_text())
    assert knn["status"] == "ok", knn
