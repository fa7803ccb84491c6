"""The headline's uncertainty: a bootstrap over clusters of related drugs, then each run's model
seeds, gives a standard error; intervals are t intervals on it, a pair's test is the t test of the
same pooled difference its interval shows; the detectable difference comes from the pair's own spread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.headline import (
    CLUSTER,
    RUN,
    SEED,
    cluster_interval,
    detectable_difference,
    headline,
    interval,
    interval_text,
    paired_comparison,
    t_interval,
    t_p,
)

METRIC = "delta_DE50"  # one component, mean baseline 0: the headline is the mean score over conditions


def frame(scores: np.ndarray, drugs_per_cluster: int, doses: int = 2) -> pd.DataFrame:
    """Per-condition scores of one cell type: `scores` is (clusters, drugs_per_cluster) per drug,
    repeated over `doses` doses; clusters named C0.., drugs D000.."""
    clusters, per = scores.shape
    drug = np.repeat([f"D{i:03d}" for i in range(clusters * per)], doses)
    return pd.DataFrame({"cell_type": "A", "drug": drug, "dose": np.tile(10.0 ** np.arange(doses), clusters * per),
                         CLUSTER: np.repeat([f"C{c}" for c in range(clusters)], per * doses),
                         METRIC: np.repeat(scores.ravel(), doses), METRIC + "_base": 0.0})


def siblings(seed: int, shift: float = 0.0, clusters: int = 8, per: int = 5, spread: float = 0.2) -> pd.DataFrame:
    """Drugs whose scores share their cluster's effect (sd `spread`), plus a little of their own."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.0, spread, (clusters, 1))
    return frame(0.4 + shift + effect + rng.normal(0.0, 0.02, (clusters, per)), per)


def width(bounds: tuple[float, float]) -> float:
    return bounds[1] - bounds[0]


def test_clusters_of_related_drugs_widen_the_interval():
    correlated = siblings(0)
    by_cluster, by_drug = cluster_interval(correlated), cluster_interval(correlated.drop(columns=CLUSTER))
    assert by_cluster[0] <= headline(correlated) <= by_cluster[1]
    assert width(by_cluster) > 2 * width(by_drug)  # 8 clusters, not 40 independent drugs
    assert width(interval(correlated)) > 2 * width(interval(correlated.drop(columns=CLUSTER)))  # the percentile one too
    one_each = correlated.assign(**{CLUSTER: correlated["drug"]})  # one cluster per drug: the drug bootstrap
    assert cluster_interval(one_each) == pytest.approx(by_drug, abs=1e-12)


def test_model_seeds_that_disagree_widen_the_interval():
    base = siblings(1, spread=0.05)
    seeds = pd.concat([base.assign(**{SEED: 0}), base.assign(**{SEED: 1, METRIC: base[METRIC] + 0.3})], ignore_index=True)
    averaged = seeds.groupby(["cell_type", "drug", "dose", CLUSTER], as_index=False)[[METRIC, METRIC + "_base"]].mean()
    assert headline(seeds) == pytest.approx(headline(averaged))
    low, high = cluster_interval(seeds.assign(**{RUN: 0}))
    assert low < headline(averaged) - 0.1 and high > headline(averaged) + 0.1  # some draws take seed 0 (or 1) twice
    assert width((low, high)) > width(cluster_interval(averaged)) + 0.2
    same = pd.concat([base.assign(**{SEED: 0}), base.assign(**{SEED: 1})], ignore_index=True)
    assert cluster_interval(same) == pytest.approx(cluster_interval(base), abs=1e-12)  # identical seeds add nothing


def test_seeds_are_drawn_within_each_run():
    """Each run (fold) draws from its own seeds; a run with one seed adds no seed variation."""
    a, b = siblings(2, clusters=4, spread=0.02), siblings(3, clusters=4, spread=0.02)
    b = b.assign(drug=b["drug"] + "b", **{CLUSTER: b[CLUSTER] + "b"})
    one = pd.concat([a.assign(**{RUN: 0, SEED: 0}), b.assign(**{RUN: 1, SEED: 0})], ignore_index=True)
    two = pd.concat([one, a.assign(**{RUN: 0, SEED: 1, METRIC: a[METRIC] + 0.3})], ignore_index=True)
    assert width(cluster_interval(two)) > width(cluster_interval(one)) + 0.1
    assert width(cluster_interval(pd.concat([one, b.assign(**{RUN: 1, SEED: 1})], ignore_index=True))) == pytest.approx(
        width(cluster_interval(one)))


def test_the_test_and_the_interval_agree():
    """Two-sided: p < 0.05 exactly when the 95% paired interval excludes 0, over shifts from none to clear."""
    verdicts = []
    for k, shift in enumerate(np.linspace(-0.15, 0.15, 31)):
        a, b = siblings(10 + k, spread=0.05), siblings(10 + k, shift=-shift, spread=0.05)
        b[METRIC] += np.random.default_rng(k).normal(0.0, 0.08, len(b))  # the predictors disagree per drug
        cmp = paired_comparison(a, b)
        assert cmp["difference"] == pytest.approx(headline(a) - headline(b))
        assert cmp["low"] <= cmp["difference"] <= cmp["high"] and 0.0 <= cmp["p"] <= 1.0
        excluded = cmp["low"] > 0 or cmp["high"] < 0
        assert (cmp["p"] < 0.05) == excluded, (shift, cmp)
        verdicts.append(excluded)
    assert any(verdicts) and not all(verdicts)


def test_the_t_test_inverts_the_t_interval():
    rng = np.random.default_rng(0)
    for estimate in rng.normal(0.0, 0.1, 200):
        se, clusters = rng.uniform(0.01, 0.05), int(rng.integers(2, 40))
        low, high = t_interval(estimate, se, clusters)
        assert (t_p(estimate, se, clusters) < 0.05) == (low > 0 or high < 0)
    assert t_p(0.0, 0.0, 8) == 1.0 and t_p(0.1, 0.0, 8) == 0.0 and np.isnan(t_p(0.1, float("nan"), 8))
    assert t_interval(0.0, 1.0, 8)[1] == pytest.approx(stats.t.ppf(0.975, 7))


def test_the_detectable_difference_is_the_pairs_own():
    a = siblings(4, spread=0.05)
    tight = a.assign(**{METRIC: a[METRIC] - 0.01 + np.random.default_rng(5).normal(0.0, 0.01, len(a))})
    loose = a.assign(**{METRIC: a[METRIC] - 0.01 + np.random.default_rng(6).normal(0.0, 0.10, len(a))})
    near, far = paired_comparison(a, tight), paired_comparison(a, loose)
    assert near["clusters"] == far["clusters"] == 8 and near["drugs"] == 40
    for cmp in (near, far):
        t = stats.t.ppf(0.975, 7) + stats.t.ppf(0.8, 7)
        assert cmp["detectable"] == pytest.approx(t * cmp["se"]) == pytest.approx(detectable_difference(cmp["se"], 8))
    assert far["detectable"] > 3 * near["detectable"]
    # the bootstrap standard error is that of the pooled difference: near sd(per-cluster differences) / sqrt(8)
    per_cluster = (a.groupby(CLUSTER)[METRIC].mean() - loose.groupby(CLUSTER)[METRIC].mean()).std(ddof=1) / np.sqrt(8)
    assert far["se"] == pytest.approx(per_cluster, rel=0.35)


@pytest.mark.parametrize("n", [5, 8, 40])
def test_detectable_difference_has_the_stated_power(n):
    """At the stated difference, a two-sided t-test over n clusters rejects about 80% of the time."""
    rng = np.random.default_rng(n)
    sd = 0.2
    mde = detectable_difference(sd / np.sqrt(n), n)
    rejected = [stats.ttest_1samp(rng.normal(mde, sd, n), 0.0).pvalue < 0.05 for _ in range(4000)]
    assert 0.76 < np.mean(rejected) < 0.84
    assert np.isnan(detectable_difference(sd, 1))


def test_one_drug_or_one_cluster_gives_no_interval_and_says_why():
    one = frame(np.array([[0.3]]), 1)
    assert np.isnan(interval(one)).all() and interval_text(*interval(one), drugs=1) == "n/a (one drug)"
    family = siblings(7, clusters=1)
    assert interval_text(*interval(family), drugs=5) == "n/a (one cluster)"
    cmp = paired_comparison(family, family.assign(**{METRIC: family[METRIC] - 0.1}))
    assert cmp["clusters"] == 1 and cmp["difference"] == pytest.approx(0.1) and np.isnan(cmp["p"])
    assert interval_text(0.1, 0.25, drugs=5) == "0.100 to 0.250"
