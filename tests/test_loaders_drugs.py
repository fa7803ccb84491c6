"""Drug identity across sets: case-only spelling differences aligned, SMILES attached from the
chemCPA drug tables (read from ../shared/data, never copied here)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.drugs import align_drug_names, attach_smiles, read_smiles_table
from bench.data.loaders import load_bulk
from bench.schema import CONTROL, DRUG

SCIPLEX_DRUGS = ["Crizotinib", "Dasatinib", "Trametinib", "Ruxolitinib", "Tozasertib"]


def test_lincs_table_gives_smiles_by_pert_id(shared_data):
    bulk = load_bulk(shared_data / "l1000" / "test_l1000.gct")
    table = read_smiles_table(shared_data / "drugs" / "lincs_drugs_smiles.csv")
    assert len(table) == 17_775
    without = attach_smiles(bulk, table)
    treated = bulk.obs[bulk.obs[DRUG] != CONTROL]
    assert without == 8 and treated[DRUG].nunique() == 59
    assert bulk.obs.loc[bulk.obs[DRUG] == CONTROL, "smiles"].isna().all()
    row = treated.iloc[0]
    assert row["smiles"] == table[row["pert_id"].casefold()]


def test_case_only_differences_are_aligned(smoke):
    bulk = smoke.bulk.copy()
    bulk.obs[DRUG] = bulk.obs[DRUG].astype(str).str.lower().replace({CONTROL.lower(): CONTROL})
    found = align_drug_names(smoke.sc, bulk)
    assert len(found) == 12 and {how for _, how in found.values()} == {"letter case"}
    sc_drugs = set(smoke.sc.obs[DRUG].astype(str))
    bulk_only = set(smoke.bulk.obs[DRUG].astype(str)) - sc_drugs
    assert set(bulk.obs[DRUG].astype(str)) == sc_drugs | {d.lower() for d in bulk_only}  # only shared drugs respelled


@pytest.fixture
def sciplex_on_l1000_genes(shared_data, tmp_path):
    """A small CPA-layout single-cell file measuring 200 L1000 landmark genes and five sci-Plex3
    drugs that the real L1000 plate also holds (spelled there in lower case)."""
    genes = list(load_bulk(shared_data / "l1000" / "test_l1000.gct").var_names[:200])
    rng = np.random.default_rng(0)
    drug = np.array(["control"] + SCIPLEX_DRUGS)[np.arange(600) % 6]
    x = np.log1p(rng.poisson(2.0, (600, 200))).astype(np.float32)
    obs = pd.DataFrame({"condition": drug, "cell_type": "A549", "dose": np.where(drug == "control", 0.0, 1000.0),
                        "control": (drug == "control").astype(int)}, index=[f"c{i}" for i in range(600)])
    path = tmp_path / "sciplex.h5ad"
    ad.AnnData(x, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)
    return path


def test_data_command_aligns_drugs_and_attaches_smiles(shared_data, sciplex_on_l1000_genes, tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["data", "--sc", str(sciplex_on_l1000_genes), "--bulk", str(shared_data / "l1000" / "test_l1000.gct"),
            "--smiles", str(shared_data / "drugs" / "trapnell_drugs_smiles.csv"), "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "genes: 200 shared" in err and "drugs: 5 of 5 single-cell drugs have bulk profiles" in err
    assert "smiles: 0 single-cell drug(s) without a SMILES" in err
    sc, bulk = ad.read_h5ad(out / "sc.h5ad"), ad.read_h5ad(out / "bulk.h5ad")
    assert set(SCIPLEX_DRUGS) <= set(bulk.obs[DRUG].astype(str))
    table = read_smiles_table(shared_data / "drugs" / "trapnell_drugs_smiles.csv")
    by_drug = sc.obs.loc[sc.obs[DRUG] != CONTROL].groupby(DRUG, observed=True)["smiles"].first()
    assert by_drug.to_dict() == {d: table[d.casefold()] for d in SCIPLEX_DRUGS}
