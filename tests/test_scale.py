"""Memory at scale, on small files: loading, splitting and DE ranking stay sparse and float32, so
their peak allocation is a fraction of the dense matrix (the full-size figures are in docs/data.md)."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.data.loaders import load_bulk, load_single_cell
from metrics.de import rank_de_genes
from splits import get_split

N_CELLS, N_GENES, DENSITY = 20_000, 2_000, 0.10
DENSE_BYTES = N_CELLS * N_GENES * 4  # the float32 matrix the loaders must never build


def peak_bytes(fn, *args, **kwargs):
    """(result, peak bytes allocated while `fn` ran)."""
    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def sciplex_like(tmp_path_factory):
    """A sci-Plex3-shaped file in the CPA layout: float64 CSR X, a raw-count layer, 12 drugs x 4 doses
    x 3 cell types plus controls, and a stored split column."""
    rng = np.random.default_rng(0)
    x = sp.random(N_CELLS, N_GENES, density=DENSITY, format="csr", dtype=np.float64, random_state=rng)
    x.data = np.log1p(x.data * 20)
    drugs = np.array(["control"] + [f"drug{i}" for i in range(12)])
    drug = drugs[rng.integers(0, len(drugs), N_CELLS)]
    obs = pd.DataFrame({
        "condition": pd.Categorical(drug),
        "cell_type": pd.Categorical(np.array(["A549", "K562", "MCF7"])[rng.integers(0, 3, N_CELLS)]),
        "dose": np.where(drug == "control", 0.0, rng.choice([10.0, 100.0, 1000.0, 10000.0], N_CELLS)),
        "control": (drug == "control").astype(int),
        "split_ood_finetuning": pd.Categorical(np.where(np.isin(drug, ["drug0", "drug1"]), "ood",
                                                         np.where(drug == "drug2", "test", "train"))),
    }, index=[f"c{i}" for i in range(N_CELLS)])
    counts = x.copy()
    counts.data = np.round(np.expm1(counts.data))
    path = tmp_path_factory.mktemp("scale") / "sciplex.h5ad"
    ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(N_GENES)]), layers={"counts": counts}).write_h5ad(path)
    return path


def test_single_cell_loads_as_float32_csr_without_layers(sciplex_like, benchmark):
    sc, peak = peak_bytes(load_single_cell, sciplex_like)
    assert sp.isspmatrix_csr(sc.X) and sc.X.dtype == np.float32 and not sc.layers
    assert sc.X.nnz == pytest.approx(N_CELLS * N_GENES * DENSITY, rel=0.01)
    # float32 CSR is 0.2 x dense, and checking its indices before scipy sees them (bench.data.hdf5) adds a
    # few percent; a float64 staging copy or the counts layer would push it past 0.4 x
    assert peak < 0.35 * DENSE_BYTES, f"{peak / 1e6:.0f} MB"
    benchmark.pedantic(load_single_cell, args=(sciplex_like,), rounds=1, iterations=1)


def test_split_and_de_ranking_never_densify(sciplex_like):
    sc = load_single_cell(sciplex_like)
    split, split_peak = peak_bytes(get_split, "unseen_drugs", sc, split_column="split_ood_finetuning")
    assert split.drugs(sc.obs, "test") == ["drug0", "drug1"]
    de, de_peak = peak_bytes(rank_de_genes, sc)
    assert len(de) == 3 * 12 and all(len(v) == N_GENES for v in de.values())
    assert max(split_peak, de_peak) < 0.1 * DENSE_BYTES, (split_peak, de_peak)


def test_dense_float64_bulk_is_read_as_float32_without_a_staging_copy(tmp_path):
    n, genes = 50_000, 978
    path = tmp_path / "lincs.h5ad"
    obs = pd.DataFrame({"pert_iname": pd.Categorical(np.where(np.arange(n) % 10 == 0, "DMSO", "drugA")),
                        "cell_id": "A549", "pert_dose": 1.0}, index=[f"s{i}" for i in range(n)])
    ad.AnnData(obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(genes)])).write_h5ad(path)
    values = np.random.default_rng(1).standard_normal((n, genes))
    with h5py.File(path, "a") as fh:
        fh["X"] = values
        fh["X"].attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    bulk, peak = peak_bytes(load_bulk, path)
    assert bulk.X.dtype == np.float32
    np.testing.assert_allclose(bulk.X, values.astype(np.float32))
    assert peak < 1.5 * n * genes * 4, f"{peak / 1e6:.0f} MB"  # reading float64 first would cost 3 x
    assert bulk.obs["dose"].max() == pytest.approx(1000.0)  # µM -> nM


def test_predictions_are_requested_and_scored_in_batches(smoke, monkeypatch):
    """At sci-Plex3 size, control-sized predictions of every test condition would not fit in memory."""
    import bench.evaluation as evaluation

    split = get_split("unseen_drugs", smoke.sc)
    ev = evaluation.Evaluator(smoke.sc, split.conditions(smoke.sc.obs, "test"))
    calls = []

    def predict_many(conditions, controls):
        calls.append(len(conditions))
        return {c: controls(c.cell_type) + 0.1 for c in conditions}

    whole = ev.score(predict_many(ev.conditions, ev.control_source()))
    largest = max(ev.control_source()(ct).nbytes for ct in {c.cell_type for c in ev.conditions})
    monkeypatch.setattr(evaluation.scoring, "PREDICTION_BATCH_BYTES", 3 * largest)
    calls.clear()
    batched = ev.score_predictor(predict_many)
    assert max(calls) == 3 and sum(calls) == len(ev.conditions) > 3
    pd.testing.assert_frame_equal(batched, whole)
