"""Benchmarks of the hot metrics (run for real with `pytest --benchmark-enable tests/test_bench_metrics.py`).

The suite runs them once as tests (benchmarks disabled) and checks the fast path equals the reference."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.evaluation import Evaluator
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition
from metrics.beyond import energy_distance
from metrics.correlation import max_correlation

N_TRUE, N_PRED, GENES = 70, 300, 2000  # one sci-Plex3-sized condition
N_CONDITIONS, N_CONTROLS = 10, 5000  # a slice of the ~9,000 sci-Plex3 conditions, to extrapolate from


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    return rng.gamma(1.0, 1.0, (N_TRUE, GENES)).astype(np.float32), rng.gamma(1.0, 1.0, (N_PRED, GENES)).astype(np.float32)


def scipy_loop_dis(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([max(stats.pearsonr(t, p)[0] for p in pred) for t in true]))


def test_bench_dis_vectorised(benchmark, cells):
    true, pred = cells
    value = benchmark(lambda: float(max_correlation(true, pred).mean()))
    per_cell = max_correlation(true, pred)
    assert per_cell[:3] == pytest.approx([max(stats.pearsonr(t, p)[0] for p in pred) for t in true[:3]], abs=1e-6)
    assert value == pytest.approx(per_cell.mean())


def test_bench_dis_scipy_pair_loop(benchmark, cells):
    """The reference: one scipy.stats.pearsonr per (true cell, predicted cell) pair (a 10-cell slice)."""
    true, pred = cells
    value = benchmark.pedantic(scipy_loop_dis, args=(true[:10], pred), rounds=1, iterations=1)
    assert value == pytest.approx(max_correlation(true[:10], pred).mean(), abs=1e-6)


def test_bench_numpy_matmul(benchmark, cells):
    """The physical limit: a plain float64 matrix product of the same shape."""
    true, pred = cells
    a, b = true.astype(np.float64), pred.astype(np.float64).T.copy()
    out = benchmark(lambda: a @ b)
    assert out.shape == (N_TRUE, N_PRED)


def test_bench_energy_de50(benchmark, cells):
    true, pred = cells
    value = benchmark(energy_distance, true[:, :50], pred[:, :50])
    assert np.isfinite(value)  # unbiased: two close distributions can score slightly below 0


@pytest.fixture(scope="module")
def slice_of_sciplex():
    """One cell type's controls and N_CONDITIONS conditions of N_TRUE cells over GENES genes."""
    rng = np.random.default_rng(1)
    n = N_CONTROLS + N_CONDITIONS * N_TRUE
    x = rng.poisson(rng.gamma(1.0, 1.0, GENES), (n, GENES)).astype(np.float32)
    drugs = [CONTROL] * N_CONTROLS + [f"D{i:04d}" for i in range(N_CONDITIONS) for _ in range(N_TRUE)]
    obs = pd.DataFrame({DRUG: drugs, CELL_TYPE: "A549", DOSE: 1000.0}, index=[str(i) for i in range(n)])
    conditions = [Condition("A549", f"D{i:04d}", 1000.0) for i in range(N_CONDITIONS)]
    return ad.AnnData(x, obs=obs), conditions


def test_bench_evaluator_setup(benchmark, slice_of_sciplex):
    """Once per split: cells, DE ranking, control statistics, floor and replicate ceiling."""
    adata, conditions = slice_of_sciplex
    ev = benchmark.pedantic(Evaluator, args=(adata, conditions), rounds=1, iterations=1)
    assert len(ev.conditions) == N_CONDITIONS


def test_bench_evaluator_score(benchmark, slice_of_sciplex):
    """Every epoch: every metric on every condition (predictions of N_TRUE cells each)."""
    adata, conditions = slice_of_sciplex
    ev = Evaluator(adata, conditions)
    rng = np.random.default_rng(2)
    preds = {c: ev.true_cells(c)[rng.permutation(N_TRUE)] + 0.1 for c in conditions}
    frame = benchmark(ev.score, preds)
    assert len(frame) == N_CONDITIONS and frame["dis"].between(0.0, 1.0).all()
