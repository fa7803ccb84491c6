"""Memory of the GCTX reader, on a small file: a float64 matrix with inferred genes is read in
sample blocks, landmark genes only, as float32; the full-precision matrix is never held."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np

import bench.data.gct as gct
from bench.data.loaders import load_bulk
from bench.schema import CONTROL, DRUG

N_SAMPLES, N_GENES = 20_000, 1_000  # half of the genes flagged as landmarks


def test_gctx_reads_landmarks_in_blocks_without_a_float64_copy(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((N_SAMPLES, N_GENES))
    path = tmp_path / "level3.gctx"
    with h5py.File(path, "w") as fh:
        fh["0/DATA/0/matrix"] = matrix
        fh["0/META/COL/id"] = np.array([f"inst{i}" for i in range(N_SAMPLES)], dtype="S")
        fh["0/META/COL/pert_iname"] = np.where(np.arange(N_SAMPLES) % 10 == 0, "DMSO", "drugA").astype("S")
        fh["0/META/COL/pert_type"] = np.where(np.arange(N_SAMPLES) % 10 == 0, "ctl_vehicle", "trt_cp").astype("S")
        fh["0/META/COL/cell_id"] = np.array(["A375"] * N_SAMPLES, dtype="S")
        fh["0/META/COL/pert_dose"] = np.where(np.arange(N_SAMPLES) % 10 == 0, -666.0, 10.0)
        fh["0/META/ROW/id"] = np.array([str(1000 + i) for i in range(N_GENES)], dtype="S")
        fh["0/META/ROW/pr_gene_symbol"] = np.array([f"G{i}" for i in range(N_GENES)], dtype="S")
        fh["0/META/ROW/pr_is_lmark"] = (np.arange(N_GENES) % 2 == 0).astype(np.int64)
    monkeypatch.setattr(gct, "BLOCK_ROWS", 1024)
    tracemalloc.start()
    try:
        bulk = load_bulk(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert bulk.X.dtype == np.float32 and bulk.shape == (N_SAMPLES, N_GENES // 2)
    np.testing.assert_allclose(bulk.X, matrix[:, ::2].astype(np.float32))
    assert (bulk.obs[DRUG] == CONTROL).sum() == N_SAMPLES // 10 and set(bulk.obs["dose"]) == {0.0, 10_000.0}
    assert peak < 0.5 * matrix.nbytes, f"peak {peak / 2**20:.0f} MiB vs float64 matrix {matrix.nbytes / 2**20:.0f} MiB"
