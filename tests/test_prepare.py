"""`bench prepare` on files in scPerturb's sci-Plex3 layout (tests/layouts.py) with the real L1000
plate as bulk: values as scanpy computes them, genes chosen from controls only, block size without
effect, per-condition caps, DE lists stored as the evaluator ranks them, and one-line errors."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main
from bench.data.loaders import load_bulk, load_single_cell
from bench.prepare import OUTPUTS, PrepareOptions, prepare
from bench.schema import CELL_TYPE, CONTROL, DE_UNS_KEY, DOSE, DRUG
from layouts import ALIAS_ONLY, NOT_ON_PLATE, PLATE_DRUGS, SCIPLEX_DOSES, scperturb_sciplex3, scperturb_sciplex3_full
from metrics.de import rank_de_genes

pytestmark = pytest.mark.filterwarnings("ignore:Variable names are not unique")  # the layout's duplicated symbols

DRUGS = PLATE_DRUGS + ALIAS_ONLY + NOT_ON_PLATE
N_SHARED = 150  # plate genes among the single-cell symbols
GENES = 170  # so 20 variable genes are chosen


@pytest.fixture(scope="module")
def plate(shared_data):
    return shared_data / "l1000" / "test_l1000.gct"


@pytest.fixture(scope="module")
def sciplex(plate, tmp_path_factory):
    genes = list(load_bulk(plate).var_names[:N_SHARED]) + [f"LINC{i:05d}" for i in range(50)]
    return scperturb_sciplex3(tmp_path_factory.mktemp("scperturb") / "sciplex3.h5ad", genes, DRUGS)


@pytest.fixture(scope="module")
def prepared(sciplex, plate, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "bench-data"
    record = prepare(sciplex, plate, out, PrepareOptions(genes=GENES))
    return out, record


def merged_log_normalised(path) -> ad.AnnData:
    """The whole file, duplicated symbols' counts summed, then scanpy's normalize_total + log1p."""
    import scanpy

    raw = ad.read_h5ad(path)
    symbols = pd.Index(raw.var_names)
    dense = raw.X.toarray()
    unique = symbols.unique()
    summed = np.stack([dense[:, np.asarray(symbols == g)].sum(axis=1) for g in unique], axis=1)
    merged = ad.AnnData(summed.astype(np.float32), obs=raw.obs, var=pd.DataFrame(index=unique))
    scanpy.pp.normalize_total(merged, target_sum=1e4)
    scanpy.pp.log1p(merged)
    return merged


def read(out) -> ad.AnnData:
    return ad.read_h5ad(out / "sc.h5ad")


def test_values_are_scanpys_normalisation_of_the_merged_full_matrix(prepared, sciplex):
    out, record = prepared
    sc = read(out)
    expected = merged_log_normalised(sciplex)
    assert sc.n_vars == GENES and list(sc.obs_names) == list(expected.obs_names)
    # the library size spans every gene of the file, not only the kept ones
    np.testing.assert_allclose(sc.X.toarray(), expected[:, sc.var_names].X, rtol=1e-5, atol=1e-6)
    assert record["raw_counts"] and sc.X.dtype == np.float32


def test_genes_are_shared_landmarks_plus_scanpys_variable_genes_of_the_controls(prepared, sciplex, plate):
    import scanpy

    sc = read(prepared[0])
    landmarks = set(load_bulk(plate).var_names)
    assert set(sc.var_names[sc.var["landmark"]]) == landmarks & set(pd.Index(ad.read_h5ad(sciplex).var_names))
    assert sc.var["landmark"].sum() == N_SHARED
    controls = merged_log_normalised(sciplex)
    controls = controls[(controls.obs["perturbation"] == "control").to_numpy()].copy()
    hvg = scanpy.pp.highly_variable_genes(controls, flavor="seurat", inplace=False)
    hvg.index = controls.var_names
    np.testing.assert_allclose(sc.var["dispersions_norm"], hvg.loc[sc.var_names, "dispersions_norm"], rtol=1e-5, atol=1e-5)
    ranked = hvg.loc[~hvg.index.isin(landmarks), "dispersions_norm"].dropna().sort_values(ascending=False, kind="stable")
    assert ranked.iloc[GENES - N_SHARED - 1] > ranked.iloc[GENES - N_SHARED]  # no tie at the cut
    assert set(sc.var_names[sc.var["highly_variable"]]) == set(ranked.index[: GENES - N_SHARED])
    assert "control cells only" in json.loads((prepared[0] / "prepare.json").read_text())["gene_selection"]["cells"]


def _rewrite(path, src, rows_of) -> None:
    """A copy of `src` whose counts of the rows `rows_of(obs)` are raised on ten non-landmark genes."""
    raw = ad.read_h5ad(src)
    x = raw.X.toarray()
    rows = rows_of(raw.obs)
    genes = np.flatnonzero(pd.Index(raw.var_names).str.startswith("LINC"))[::5]
    x[np.ix_(rows, genes)] += np.random.default_rng(1).poisson(40, (rows.sum(), len(genes)))
    raw.X = sp.csr_matrix(x)
    raw.write_h5ad(path)


def test_a_drugs_cells_never_choose_the_genes(prepared, sciplex, plate, tmp_path):
    genes = list(read(prepared[0]).var_names)
    _rewrite(tmp_path / "drug.h5ad", sciplex, lambda obs: (obs["perturbation"] == "Dasatinib").to_numpy())
    prepare(tmp_path / "drug.h5ad", plate, tmp_path / "a", PrepareOptions(genes=GENES))
    assert list(read(tmp_path / "a").var_names) == genes
    # the same change in control cells does change them: the rule is not blind to everything
    half_of_the_controls = lambda obs: (obs["perturbation"] == "control").to_numpy() & (np.arange(len(obs)) % 2 == 0)  # noqa: E731
    _rewrite(tmp_path / "ctrl.h5ad", sciplex, half_of_the_controls)
    prepare(tmp_path / "ctrl.h5ad", plate, tmp_path / "b", PrepareOptions(genes=GENES))
    assert list(read(tmp_path / "b").var_names) != genes


def test_block_size_does_not_change_the_output(prepared, sciplex, plate, tmp_path):
    prepare(sciplex, plate, tmp_path / "tiny", PrepareOptions(genes=GENES, block_cells=7))
    big, tiny = read(prepared[0]), read(tmp_path / "tiny")
    assert (tiny.X != big.X).nnz == 0 and tiny.X.nnz == big.X.nnz
    pd.testing.assert_frame_equal(tiny.var, big.var)
    pd.testing.assert_frame_equal(tiny.obs, big.obs)
    for key, genes in big.uns["rank_genes_groups_cov"].items():
        np.testing.assert_array_equal(tiny.uns["rank_genes_groups_cov"][key], genes)


def test_max_cells_per_condition_caps_each_condition_keeps_controls_seeded(sciplex, plate, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        record = prepare(sciplex, plate, tmp_path / name, PrepareOptions(genes=GENES, max_cells_per_condition=2, seed=seed))
        runs[name] = read(tmp_path / name)
    obs = runs["a"].obs
    treated = obs[obs[DRUG] != CONTROL]
    sizes = treated.groupby([CELL_TYPE, DRUG, DOSE], observed=True).size()
    assert len(sizes) == 3 * len(DRUGS) * len(SCIPLEX_DOSES) and (sizes == 2).all()  # 6 per condition before
    assert (obs[DRUG] == CONTROL).sum() == 3 * 60 == record["counts"]["control_cells"]
    assert list(runs["a"].obs_names) == list(runs["b"].obs_names)
    assert list(runs["a"].obs_names) != list(runs["c"].obs_names)
    assert record["counts"]["cells_kept"] == runs["c"].n_obs == len(treated) + 180


def test_stored_de_lists_are_cpas_ranking(prepared):
    """The file carries CPA's `rank_genes_groups_cov` (every gene per (cell type, drug), |t| order), so
    CPA and chemCPA read it as their own; bench's scoring chooses its DE genes per condition itself."""
    sc = load_single_cell(prepared[0] / "sc.h5ad")
    assert DE_UNS_KEY in sc.uns
    pos = {g: i for i, g in enumerate(sc.var_names)}
    stored = {key: np.array([pos[g] for g in genes]) for key, genes in sc.uns[DE_UNS_KEY].items()}
    del sc.uns[DE_UNS_KEY]
    on_the_fly = rank_de_genes(sc, CONTROL)
    assert stored.keys() == on_the_fly.keys() and len(stored) == 3 * len(DRUGS)
    for key, ranked in on_the_fly.items():
        np.testing.assert_array_equal(stored[key], ranked)  # every gene, so top-10/top-50 agree too


def test_the_output_runs_with_no_options(prepared, tmp_path, capsys):
    out = prepared[0]
    assert main(["check", "--sc", str(out / "sc.h5ad"), "--bulk", str(out / "bulk.h5ad")]) == 0
    said = capsys.readouterr()
    assert "drugs: 13 of 29 single-cell drugs have bulk profiles" in said.err
    assert f"{GENES} genes chosen by bench prepare: {N_SHARED} L1000 landmarks" in said.out and "control cells only" in said.out
    argv = ["run", "--sc", str(out / "sc.h5ad"), "--bulk", str(out / "bulk.h5ad"), "--predictors", "control_mean,knn",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    knn = json.loads((tmp_path / "run/runs/knn/seed0/result.json").read_text())
    assert knn["status"] == "ok", knn["error"]
    assert sorted(pd.read_csv(tmp_path / "run/runs/knn/seed0/conditions.csv")["dose"].unique()) == list(SCIPLEX_DOSES)


def test_prepare_json_records_inputs_options_counts(prepared, sciplex, plate):
    out, _ = prepared
    record = json.loads((out / "prepare.json").read_text())
    assert record["inputs"]["sc"]["bytes"] == sciplex.stat().st_size and record["inputs"]["bulk"]["path"] == str(plate.resolve())
    assert record["options"]["genes"] == GENES and record["options"]["max_cells_per_condition"] is None
    n = record["counts"]
    assert (n["genes_in"], n["symbols_in"], n["landmarks"], n["variable_genes"]) == (204, 200, N_SHARED, GENES - N_SHARED)
    assert n["drugs"] == 29 and n["drugs_in_bulk"] == 13 and n["bulk_profiles"] == 377 and record["wall_seconds"] > 0
    assert any("4 gene symbol(s) listed more than once" in s and "counts summed" in s for s in record["steps"])
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)


def test_smiles_are_attached_and_dose_units_not_misread(sciplex, plate, shared_data, tmp_path):
    drugs = shared_data / "drugs"
    argv = ["prepare", "--sc", str(sciplex), "--bulk", str(plate), "--out", str(tmp_path / "o"), "--genes", str(GENES),
            "--smiles", str(drugs / "trapnell_drugs_smiles.csv"), "--smiles", str(drugs / "lincs_drugs_smiles.csv")]
    assert main(argv) == 0
    sc, bulk = read(tmp_path / "o"), ad.read_h5ad(tmp_path / "o" / "bulk.h5ad")
    treated = sc.obs[DRUG] != CONTROL
    assert sc.obs.loc[treated, "smiles"].notna().mean() > 0.9 and sc.obs.loc[~treated, "smiles"].isna().all()
    assert bulk.obs.loc[bulk.obs[DRUG] == "Dasatinib", "smiles"].notna().all()  # pert_id look-up, name respelled
    assert "published_dose_unit" in sc.obs and "dose_unit" not in sc.obs
    assert sorted(load_single_cell(tmp_path / "o" / "sc.h5ad").obs.loc[treated.to_numpy(), DOSE].unique()) == list(SCIPLEX_DOSES)


def test_dense_input_gives_the_csr_result_and_csc_is_refused(prepared, sciplex, plate, tmp_path, capsys):
    raw = ad.read_h5ad(sciplex)
    raw.X = raw.X.toarray()
    raw.write_h5ad(tmp_path / "dense.h5ad")
    prepare(tmp_path / "dense.h5ad", plate, tmp_path / "d", PrepareOptions(genes=GENES, block_cells=100))
    assert (read(tmp_path / "d").X != read(prepared[0]).X).nnz == 0
    raw.X = sp.csc_matrix(raw.X)
    raw.write_h5ad(tmp_path / "csc.h5ad")
    assert main(["prepare", "--sc", str(tmp_path / "csc.h5ad"), "--bulk", str(plate), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "(CSC)" in err[-1] and not (tmp_path / "c").exists()


def test_log_normalised_input_is_kept_as_is_duplicates_by_expression(prepared, plate, tmp_path):
    first = read(prepared[0])
    weak = first[:, :1].copy()
    weak.X = weak.X * 0.5  # a second column of the first symbol, less expressed: dropped
    again = ad.concat([first, weak], axis=1, merge="first")
    again.obs = first.obs
    again.write_h5ad(tmp_path / "lognorm.h5ad")
    record = prepare(tmp_path / "lognorm.h5ad", plate, tmp_path / "l", PrepareOptions(genes=GENES))
    second = read(tmp_path / "l")
    assert not record["raw_counts"] and list(second.var_names) == list(first.var_names)
    assert (second.X != first.X).nnz == 0


def test_full_shape_generator_writes_a_readable_scperturb_file(plate, tmp_path):
    landmarks = list(load_bulk(plate).var_names)
    info = scperturb_sciplex3_full(tmp_path / "full.h5ad", landmarks, DRUGS, n_cells=3_000, n_genes=5_000,
                                   duplicated=40, block_cells=1_000, median_umis=400)
    raw = ad.read_h5ad(tmp_path / "full.h5ad")
    assert raw.shape == (3_000, 5_000) and sp.issparse(raw.X) and raw.X.nnz == info["nnz"]
    assert np.array_equal(raw.X.data, np.round(raw.X.data)) and raw.X.has_sorted_indices
    assert pd.Index(raw.var_names).duplicated().sum() == 40 and set(landmarks) <= set(raw.var_names)
    np.testing.assert_array_equal(raw.obs["ncounts"], np.asarray(raw.X.sum(axis=1)).ravel())
    assert set(raw.obs["cell_line"]) == {"A549", "K562", "MCF7"} and raw.obs["perturbation"].dtype == "category"
    assert main(["prepare", "--sc", str(tmp_path / "full.h5ad"), "--bulk", str(plate), "--out", str(tmp_path / "o"),
                 "--block-cells", "512"]) == 0
    sc = load_single_cell(tmp_path / "o" / "sc.h5ad")
    assert sc.n_vars == 2_000 and sc.var_names.is_unique and sc.n_obs == 3_000


@pytest.mark.parametrize("extra, expected", [
    (["--max-cells-per-condition", "0"], "--max-cells-per-condition 0: expected a whole number of at least 1"),
    (["--genes", "100"], f"--genes 100: fewer than the {N_SHARED} L1000 landmark genes both sets measure"),
    (["--genes", "0"], "--genes 0: expected a whole number"),
    (["--smiles", "/nonexistent/table.csv"], "/nonexistent/table.csv: file not found"),
    (["--normalize", "none"], "values look like raw counts (all integers, max"),
])
def test_bad_options_give_one_line_exit_2_and_no_output(sciplex, plate, tmp_path, capsys, extra, expected):
    argv = ["prepare", "--sc", str(sciplex), "--bulk", str(plate), "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert list(tmp_path.iterdir()) == []  # no output folder, no temporary sibling


def test_bad_inputs_give_one_line_and_no_output(sciplex, plate, tmp_path, capsys):
    foreign = scperturb_sciplex3(tmp_path / "foreign.h5ad", [f"G{i}" for i in range(40)], ["Dasatinib", "AICAR"])
    (tmp_path / "text.h5ad").write_text("not hdf5")
    cases = [(["--sc", str(tmp_path / "missing.h5ad"), "--bulk", str(plate)], "missing.h5ad: file not found"),
             (["--sc", str(tmp_path / "text.h5ad"), "--bulk", str(plate)], "not a readable h5ad file (not an HDF5 file)"),
             (["--sc", str(foreign), "--bulk", str(plate)], "no gene symbol in common"),
             (["--sc", str(sciplex), "--bulk", str(tmp_path / "nope.gct")], "nope.gct: file not found")]
    for args, expected in cases:
        assert main(["prepare", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
        assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_existing_folder_is_replaced_only_when_it_is_a_previous_output(prepared, sciplex, plate, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["prepare", "--sc", str(sciplex), "--bulk", str(plate), "--out", str(theirs)]) == 2
    assert "holds 'notes.txt'" in capsys.readouterr().err and (theirs / "notes.txt").read_text() == "mine"
    again = tmp_path / "again"
    for genes in (GENES, GENES + 5):
        assert main(["prepare", "--sc", str(sciplex), "--bulk", str(plate), "--out", str(again), "--genes", str(genes)]) == 0
    assert read(again).n_vars == GENES + 5 and sorted(p.name for p in tmp_path.iterdir()) == ["again", "theirs"]
