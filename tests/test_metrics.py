"""Metrics against plain references: scipy's pearsonr for the paper's metrics, scanpy for DE ranking."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from metrics import METRICS, ConditionData, get_metrics
from metrics.beyond import energy_distance
from metrics.correlation import max_correlation, pearson
from metrics.de import rank_by_abs_t


def ref_r(a, b) -> float:
    """scipy's Pearson r, with the documented convention: 0 when either vector is constant."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.pearsonr(a, b)[0])


def ref_dis(true, pred) -> float:
    return float(np.mean([max(ref_r(t, p) for p in pred) for t in true]))


@pytest.fixture
def data() -> ConditionData:
    rng = np.random.default_rng(0)
    g = 80
    control = rng.gamma(2.0, 1.0, (30, g))
    true = control[:20] + rng.normal(0, 1, (20, g)) + np.r_[np.full(10, 2.0), np.zeros(g - 10)]
    pred = control[10:] + rng.normal(0, 1, (20, g))
    de = rank_by_abs_t(true, control)
    return ConditionData(true=true, pred=pred, control=control, de=de)


@pytest.mark.parametrize("top, suffix", [(None, ""), (50, "_DE50"), (10, "_DE10")])
def test_paper_metrics_match_scipy(data, top, suffix):
    g = slice(None) if top is None else data.de[:top]
    t, p = data.true[:, g], data.pred[:, g]
    assert METRICS["mean" + suffix](data) == pytest.approx(ref_r(t.mean(0), p.mean(0)), abs=1e-6)
    assert METRICS["dis" + suffix](data) == pytest.approx(ref_dis(t, p), abs=1e-6)
    base = data.control[:, g].mean(0)
    assert METRICS["delta" + suffix](data) == pytest.approx(ref_r(t.mean(0) - base, p.mean(0) - base), abs=1e-6)
    assert METRICS["cov" + suffix](data) == pytest.approx(ref_dis(p, t), abs=1e-6)


def test_edge_cases_are_defined_and_nan_free():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 12))
    const = np.ones((3, 12))
    assert pearson(np.ones(12), x[0]) == 0.0  # constant vector: defined as 0
    np.testing.assert_array_equal(max_correlation(const, x), np.zeros(3))
    one = ConditionData(true=x[:1], pred=x[1:2], control=x, de=np.arange(12))  # one cell each side
    for metric in get_metrics():
        value = metric(one)
        assert np.isfinite(value), metric.name
    assert METRICS["dis"](one) == pytest.approx(ref_r(x[0], x[1]), abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a division by zero
        same = ConditionData(true=const, pred=const, control=const, de=np.arange(12))
        assert all(np.isfinite(m(same)) for m in get_metrics())


def test_perfect_prediction_reaches_the_best_value(data):
    perfect = ConditionData(true=data.true, pred=data.true, control=data.control, de=data.de)
    for metric in get_metrics():
        assert metric(perfect) == pytest.approx(metric.best, abs=1e-9), metric.name


def test_energy_distance_matches_its_definition():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 4)), rng.normal(1.0, 1.0, size=(9, 4))
    d = lambda u, v: np.mean([np.linalg.norm(x - y) for x in u for y in v])  # noqa: E731
    assert energy_distance(a, b) == pytest.approx(2 * d(a, b) - d(a, a) - d(b, b), abs=1e-9)
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_no_change_scores_zero_on_change_metrics(data):
    none = ConditionData(true=data.true, pred=data.control, control=data.control, de=data.de)
    for name in ("delta", "delta_DE50", "delta_DE10", "de_overlap", "de_sign"):
        assert METRICS[name](none) == 0.0


def test_de_ranking_matches_scanpy():
    sc = pytest.importorskip("scanpy")
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(3)
    g = 60
    ctrl = rng.normal(2.0, 1.0, (40, g))
    treated = rng.normal(2.0, 1.0, (30, g)) + np.r_[np.linspace(2.0, -2.0, 20), np.zeros(g - 20)]
    adata = ad.AnnData(np.vstack([ctrl, treated]).astype(np.float32), obs=pd.DataFrame({"group": ["c"] * 40 + ["t"] * 30}))
    adata.obs.index = adata.obs.index.astype(str)
    adata.var_names = [f"g{i}" for i in range(g)]
    sc.tl.rank_genes_groups(adata, "group", groups=["t"], reference="c", method="t-test", rankby_abs=True, n_genes=g)
    expected = [adata.var_names.get_loc(n) for n in adata.uns["rank_genes_groups"]["names"]["t"]]
    ours = rank_by_abs_t(treated.astype(np.float32), ctrl.astype(np.float32))
    assert list(ours[:50]) == expected[:50]
