"""Metrics against plain references: scipy's pearsonr for the paper's metrics, scanpy for DE ranking."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from metrics import METRICS, ConditionData, get_metrics, score_condition
from metrics.beyond import energy_distance
from metrics.correlation import best_matches, max_correlation, pearson
from metrics.de import mean_var, rank_by_abs_t, significant_genes, welch_t


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
    de = significant_genes(true, mean_var(control), len(control))
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
    per_condition = [m for m in get_metrics() if not m.split_level]  # split-level: tests/test_peer_metrics.py
    wilcoxon_inert = {"overlap_at_N", "overlap_at_50", "precision_at_50", "de_direction_match"}  # no significant true gene
    for metric in per_condition:
        value = metric(one)
        assert np.isnan(value) if metric.name in wilcoxon_inert else np.isfinite(value), metric.name
    assert METRICS["dis"](one) == pytest.approx(ref_r(x[0], x[1]), abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a division by zero
        same = ConditionData(true=const, pred=const, control=const, de=np.arange(12))
        assert all(np.isfinite(m(same)) for m in per_condition if m.name not in wilcoxon_inert)


def test_perfect_prediction_reaches_the_best_value(data):
    perfect = ConditionData(true=data.true, pred=data.true, control=data.control, de=data.de)
    for metric in (m for m in get_metrics() if not m.split_level):
        if metric.name == "energy_DE50":  # the U-statistic of a set against itself lies below 0 (calibrated: 1)
            assert metric(perfect) < metric.best
            continue
        assert metric(perfect) == pytest.approx(metric.best, abs=1e-9), metric.name


def test_energy_distance_is_the_unbiased_u_statistic():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 4)), rng.normal(1.0, 1.0, size=(9, 4))
    d = lambda u, v: np.mean([np.linalg.norm(x - y) for x in u for y in v])  # noqa: E731
    within = lambda u: np.mean([np.linalg.norm(x - y) for i, x in enumerate(u) for j, y in enumerate(u) if i != j])  # noqa: E731
    assert energy_distance(a, b) == pytest.approx(2 * d(a, b) - within(a) - within(b), abs=1e-9)
    assert energy_distance(a, a) < 0  # unbiased: not clipped at 0, and a set against itself lies below


def test_energy_distance_does_not_grow_with_smaller_sets():
    """Two samples of one distribution: the U-statistic averages 0 at every set size, where the
    V-statistic's bias E|X-X'|/n grows as sets shrink (set sizes track a drug's toxicity)."""
    rng = np.random.default_rng(5)
    for n in (5, 40):
        values = [energy_distance(rng.normal(size=(n, 10)), rng.normal(size=(n, 10))) for _ in range(300)]
        assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))


def test_no_change_scores_zero_or_chance_on_change_metrics(data):
    none = ConditionData(true=data.true, pred=data.control, control=data.control, de=data.de)
    for name in ("delta", "delta_DE50", "delta_DE10"):
        assert METRICS[name](none) == 0.0
    assert METRICS["de_sign"](none) == 0.5  # every gene a tie: a coin flip's expectation
    genes = data.true.shape[1]
    assert METRICS["de_recall"](none) == pytest.approx(len(data.de) / genes)  # a random top N


def test_welch_t_matches_scipy_and_handles_vanishing_variance():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1.0, (9, 6)), rng.normal(0.0, 2.0, (14, 6))
    a[:, 4], b[:, 4] = 3.0, 3.0  # same constant: no difference, t = 0
    a[:, 5], b[:, 5] = 2.0, 1.0  # different constants: t = +inf (scipy and scanpy agree)
    t = welch_t(a, b)
    expected = stats.ttest_ind(a[:, :4], b[:, :4], equal_var=False).statistic
    np.testing.assert_allclose(t[:4], expected, rtol=1e-10)
    assert t[4] == 0.0 and t[5] == np.inf
    np.testing.assert_array_equal(welch_t(a, b, mean_var(b)), t)


def scanpy_ranking(sc, treated: np.ndarray, ctrl: np.ndarray, sparse: bool = False) -> list[int]:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sps

    x = np.vstack([ctrl, treated]).astype(np.float32)
    adata = ad.AnnData(sps.csr_matrix(x) if sparse else x, obs=pd.DataFrame({"group": ["c"] * len(ctrl) + ["t"] * len(treated)}))
    adata.obs.index = adata.obs.index.astype(str)
    adata.var_names = [f"g{i}" for i in range(x.shape[1])]
    sc.tl.rank_genes_groups(adata, "group", groups=["t"], reference="c", method="t-test", rankby_abs=True, n_genes=x.shape[1])
    return [adata.var_names.get_loc(n) for n in adata.uns["rank_genes_groups"]["names"]["t"]]


@pytest.mark.parametrize("sparse", [False, True])
def test_de_ranking_matches_scanpy(sparse):
    """Same order as scanpy wherever |t| differs; genes with exactly tied |t| (the unexpressed
    genes at t = 0, and count data ties) come in partition order in scanpy, by gene index here."""
    sc = pytest.importorskip("scanpy")
    rng = np.random.default_rng(3)
    g = 60
    ctrl = rng.poisson(2.0, (40, g)).astype(np.float32)
    treated = rng.poisson(2.0, (30, g)).astype(np.float32) + np.r_[np.linspace(2.0, -1.0, 20), np.zeros(g - 20)].astype(np.float32)
    ctrl[:, -5:], treated[:, -5:] = 0.0, 0.0  # unexpressed genes: tied at t = 0
    treated[:, 0] = np.maximum(treated[:, 0], 1.0)
    expected = scanpy_ranking(sc, treated, ctrl, sparse)
    import scipy.sparse as sps

    ours = rank_by_abs_t(sps.csr_matrix(treated) if sparse else treated, sps.csr_matrix(ctrl) if sparse else ctrl)
    t = np.abs(welch_t(treated, ctrl))
    np.testing.assert_array_equal(t[ours], t[expected])  # the same |t| at every rank
    assert list(ours) == sorted(expected, key=lambda i: (-t[i], i))
    assert list(ours[g - 5 :]) == list(range(g - 5, g))


def test_control_statistics_given_or_computed_agree(data):
    given = ConditionData(true=data.true, pred=data.pred, control=data.control, de=data.de, control_stats=mean_var(data.control))
    assert score_condition(given) == pytest.approx(score_condition(data), abs=1e-12)


def test_one_chunked_pass_gives_both_directions(monkeypatch):
    import metrics.correlation as corr

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(23, 30)), rng.normal(size=(17, 30))
    whole_a, whole_b = best_matches(a, b)
    monkeypatch.setattr(corr, "CHUNK_BYTES", 8 * 17 * 4)  # blocks of 4 rows
    chunked_a, chunked_b = best_matches(a, b)
    ref = np.array([[ref_r(x, y) for y in b] for x in a])
    np.testing.assert_allclose(chunked_a, ref.max(axis=1), atol=1e-9)
    np.testing.assert_allclose(chunked_b, ref.max(axis=0), atol=1e-9)
    np.testing.assert_allclose(chunked_a, whole_a, atol=1e-12)
    np.testing.assert_allclose(chunked_b, whole_b, atol=1e-12)
