"""`bench check`: files read exactly as `bench run` reads them, summarised; bad input is the same
one-line error with exit code 2."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.schema import DOSE, DRUG


@pytest.fixture(scope="module")
def files(smoke, tmp_path_factory):
    """The smoke sets as files: single cell with a `condition` column, string doses and one
    combination; bulk as written by `bench data`."""
    folder = tmp_path_factory.mktemp("check")
    sc = smoke.sc.copy()
    sc.uns.pop("bench_truth", None)
    drug = sc.obs[DRUG].astype(str).replace({"D011": "D000+D001"})
    sc.obs = sc.obs.drop(columns=DRUG).assign(condition=drug.to_numpy())
    sc.obs[DOSE] = [f"{d / 1000:g} µM" for d in sc.obs[DOSE]]
    sc.write_h5ad(folder / "sc.h5ad")
    smoke.bulk.write_h5ad(folder / "bulk.h5ad")
    return folder


def test_summary_of_single_cell_and_bulk(files, smoke, capsys):
    assert main(["check", "--sc", str(files / "sc.h5ad"), "--bulk", str(files / "bulk.h5ad")]) == 0
    out = capsys.readouterr().out
    assert "3 cell type(s), 12 drug(s) (1 combination(s)); doses: column 'dose'" in out
    # a single dose of a combination is each drug's: D000+D001 at 2 x 10 nM
    assert "CL00" in out and "10, 20, 100, 200, 1000, 2000, 10000, 20000" in out and "combinations: D000+D001" in out
    shared = len(set(smoke.sc.var_names) & set(smoke.bulk.var_names))
    assert (f"shared with single cell: {shared} genes; 11 of 12 drugs, the ones the unseen-drug splits may hold out "
            "(without bulk profiles, kept in training: D000+D001)") in out
    assert "split unseen_drugs (seed 0):" in out and "test" in out and "validation" in out
    assert "predictors skipped on this data:" in out and "oracle: needs the generating parameters" in out


def test_without_bulk_the_bulk_predictors_are_named(files, capsys):
    assert main(["check", "--sc", str(files / "sc.h5ad"), "--dose-key", "none", "--split-seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "bulk: none" in out and "one dose per drug, placeholder 1" in out and "(seed 3)" in out
    for name in ("knn", "CPA_transfer", "cVAE", "BERT", "BERT_whole_mlp"):
        assert f"  {name}: needs a bulk data set (--bulk)" in out
    assert "  control_mean:" not in out and "  random:" not in out


@pytest.mark.parametrize("argv, message", [
    (["--sc", "{folder}/absent.h5ad"], "absent.h5ad: file not found"),
    (["--sc", "{folder}/sc.h5ad", "--drug-key", "drugg"], "obs has no column 'drugg' (--drug-key)"),
    (["--bulk", "{folder}/bulk.h5ad"], "bench check needs --sc FILE"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    assert main(["check", *(a.format(folder=files) for a in argv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines() == [f"bench check: error: {captured.err.split('error: ')[1].strip()}"]
    assert message in captured.err
