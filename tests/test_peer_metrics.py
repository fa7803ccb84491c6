"""Peer metrics (cell-eval names, Systema's centroid accuracy): parity with the real cell-eval
package, the Wilcoxon engine against scipy, best and floor values, degenerate inputs, benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from metrics import METRICS, ConditionData, SplitData
from metrics.de import rank_by_abs_t
from metrics.peer import CHANCE_RANK
from metrics.wilcoxon import RankReference, differential_expression, log2_fold_change, rank_sum_pvalues, reference_for

CONDITION_METRICS = ["mse", "mae", "mse_delta", "mae_delta", "overlap_at_N", "overlap_at_50", "precision_at_50", "de_direction_match"]
RANK_METRICS = ["discrimination_score_l1", "centroid_accuracy"]
SPLIT_METRICS = [*RANK_METRICS, "pearson_edistance"]
DE_METRICS = ["overlap_at_N", "overlap_at_50", "precision_at_50", "de_direction_match"]
CONTROL = "non-targeting"


def log_counts(rng: np.random.Generator, rate: np.ndarray, n: int) -> np.ndarray:
    """log1p of Poisson counts: sparse, heavily tied, like real single-cell expression."""
    return np.log1p(rng.poisson(rate, (n, len(rate)))).astype(np.float32)


def make_fixture(seed: int = 0, genes: int = 300, controls: int = 200) -> tuple[np.ndarray, dict, dict]:
    """(controls, true cells per drug, predicted cells per drug). Drugs change 90 genes 5x up or
    down; predictions get part of the change right; `drugE` is predicted with `drugD`'s change,
    and `inert` changes nothing (its truth has no significant DE gene)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(0.6, 1.0, genes)
    ctrl = log_counts(rng, base, controls)
    effects = {}
    for drug in ["drugA", "drugB", "drugC", "drugD", "drugE"]:
        effect = np.ones(genes)
        hit = rng.choice(genes, 90, replace=False)
        effect[hit] = rng.choice([0.2, 5.0], len(hit))
        effects[drug] = (effect, hit)
    true, pred = {}, {}
    for i, (drug, (effect, hit)) in enumerate(effects.items()):
        true[drug] = log_counts(rng, base * effect, 30 + 5 * i)
        guess, guessed_hit = effects["drugD"] if drug == "drugE" else (effect, hit)
        guess = guess.copy()
        guess[guessed_hit[:30]] = 1.0
        pred[drug] = log_counts(rng, base * guess * rng.uniform(0.8, 1.25, genes), len(true[drug]))
    true["inert"], pred["inert"] = log_counts(rng, base, 25), log_counts(rng, base, 25)
    return ctrl, true, pred


def condition(true: np.ndarray, pred: np.ndarray, ctrl: np.ndarray, memo: dict | None = None) -> ConditionData:
    return ConditionData(true=true, pred=pred, control=ctrl, de=rank_by_abs_t(true, ctrl), truth_memo={} if memo is None else memo)


def split_of(true: dict, pred: dict, ctrl: np.ndarray, cell_type: str = "ct") -> SplitData:
    drugs = list(true)
    memos = {d: {} for d in drugs}
    return SplitData(
        true_means=np.stack([true[d].mean(axis=0, dtype=np.float64) for d in drugs]),
        pred_means=np.stack([pred[d].mean(axis=0, dtype=np.float64) for d in drugs]),
        control_means=np.tile(ctrl.mean(axis=0, dtype=np.float64), (len(drugs), 1)),
        cell_types=np.array([cell_type] * len(drugs)),
        drugs=np.array(drugs),
        conditions=[condition(true[d], pred[d], ctrl, memos[d]) for d in drugs],
    )


def bench_scores(ctrl: np.ndarray, true: dict, pred: dict) -> pd.DataFrame:
    rows = {d: {m: METRICS[m](condition(true[d], pred[d], ctrl)) for m in CONDITION_METRICS} for d in true}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    split = split_of(true, pred, ctrl)
    for m in SPLIT_METRICS:
        frame[m] = METRICS[m](split)
    return frame


# ---------------------------------------------------------------- parity with cell-eval


@pytest.fixture(scope="module")
def parity(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bench, cell-eval) per-drug scores of the fixture; cell-eval gets the control cells inside
    both AnnData objects (the same real controls, as bench always uses) and a perturbation column."""
    pytest.importorskip("cell_eval")
    import anndata as ad
    from cell_eval import MetricsEvaluator
    from cell_eval._pipeline import MetricPipeline

    ctrl, true, pred = make_fixture()
    drugs = list(true)

    def adata(cells: dict) -> ad.AnnData:
        labels = [CONTROL] * len(ctrl) + [d for d in drugs for _ in range(len(cells[d]))]
        obs = pd.DataFrame({"target": labels}, index=[str(i) for i in range(len(labels))])
        var = pd.DataFrame(index=[f"gene{j}" for j in range(ctrl.shape[1])])
        return ad.AnnData(X=np.concatenate([ctrl] + [cells[d] for d in drugs]), obs=obs, var=var)

    evaluator = MetricsEvaluator(adata(pred), adata(true), control_pert=CONTROL, pert_col="target", num_threads=1,
                                 outdir=str(tmp_path_factory.mktemp("cell_eval")))
    pipeline = MetricPipeline(profile=None)
    pipeline.add_metrics(CONDITION_METRICS + ["discrimination_score_l1", "pearson_edistance"])
    pipeline.compute_de_metrics(evaluator.de_comparison)
    pipeline.compute_anndata_metrics(evaluator.anndata_pair)
    theirs = pipeline.get_results().to_pandas().set_index("perturbation").reindex(drugs)
    return bench_scores(ctrl, true, pred), theirs


@pytest.mark.parametrize("name", CONDITION_METRICS + ["discrimination_score_l1", "pearson_edistance"])
def test_parity_with_cell_eval(parity, name):
    ours, theirs = parity
    both = theirs[name].notna().to_numpy()
    # only the inert drug may be missing (de_direction_match is undefined without true DE genes)
    assert both.sum() >= len(ours) - 1
    if name in DE_METRICS:  # bench: NaN where the truth has no significant gene (cell-eval: 0 for the overlaps)
        assert np.isnan(ours.loc["inert", name])
        both &= ours.index != "inert"
    if name == "pearson_edistance":  # bench: unbiased U-statistics; cell-eval: V-statistics (diagonal included)
        ours = ours.assign(pearson_edistance=v_statistic_edistance_r(*make_fixture()))
    np.testing.assert_allclose(ours[name].to_numpy()[both], theirs[name].to_numpy()[both], rtol=0, atol=1e-6)


def v_statistic_edistance_r(ctrl: np.ndarray, true: dict, pred: dict) -> float:
    """cell-eval's pearson_edistance: energy distances to the controls as V-statistics (the zero
    diagonal of each within-set mean included), correlated across conditions."""
    from metrics.beyond import mean_pairwise_distance
    from metrics.peer import control_subset

    sub = control_subset(ctrl)

    def edist(cells: np.ndarray) -> float:
        return 2 * mean_pairwise_distance(cells, sub) - mean_pairwise_distance(cells, cells) - mean_pairwise_distance(sub, sub)

    return float(np.corrcoef([edist(true[d]) for d in true], [edist(pred[d]) for d in true])[0, 1])


def test_pearson_edistance_departs_from_cell_eval_by_the_v_statistic_bias(parity):
    """bench's energy distances are unbiased: the same pairs give a different r than cell-eval's."""
    ours, theirs = parity
    assert abs(ours["pearson_edistance"].iloc[0] - theirs["pearson_edistance"].iloc[0]) > 1e-4


def test_parity_fixture_is_not_trivial(parity):
    """The fixture exercises what the metrics measure: truncation at 50, imperfect predictions, a
    confused drug, a drug without DE genes."""
    ours, theirs = parity
    assert 0 < ours.loc["drugA", "overlap_at_N"] < 1 and ours.loc["drugA", "overlap_at_50"] != ours.loc["drugA", "overlap_at_N"]
    assert ours.loc["drugE", "discrimination_score_l1"] < 1
    assert theirs.loc["inert", "overlap_at_N"] == 0 and np.isnan(theirs.loc["inert", "de_direction_match"])
    assert np.isnan(ours.loc["inert", "overlap_at_N"])  # nothing to recover: not scored


def test_de_recovery_skips_conditions_without_true_de_genes():
    """Where the truth has no significant gene, every DE-recovery metric is undefined (NaN) for every
    prediction, the controls included: inert conditions neither reward nor penalise DE recovery."""
    ctrl, true, pred = make_fixture()
    for guess in (pred["inert"], pred["drugA"], ctrl[: len(true["inert"])]):
        data = condition(true["inert"], guess, ctrl)
        assert all(np.isnan(METRICS[m](data)) for m in DE_METRICS)


# ---------------------------------------------------------------- the Wilcoxon engine


@pytest.mark.parametrize("n1,n2", [(1, 1), (3, 1), (6, 9), (25, 120)])
def test_rank_sum_matches_scipy_with_ties(n1, n2):
    rng = np.random.default_rng(n1 * 100 + n2)
    rate = rng.gamma(0.6, 1.0, 40)
    x, y = log_counts(rng, rate * 1.5, n1), log_counts(rng, rate, n2)
    x[:, 0] = y[:, 0] = 1.0  # a gene constant across both groups: p = 1
    ours = rank_sum_pvalues(x, RankReference.from_cells(y))
    expected = [mannwhitneyu(x[:, j].astype(float), y[:, j].astype(float), method="asymptotic").pvalue for j in range(x.shape[1])]
    np.testing.assert_allclose(ours, np.nan_to_num(expected, nan=1.0), rtol=1e-12, atol=1e-15)
    assert ours[0] == 1.0


def test_rank_sum_of_mostly_zero_cells_matches_scipy():
    """sci-Plex3-like sparsity: long runs of tied zeros on both sides (each run of the group is
    placed among the reference once, for all its cells)."""
    rng = np.random.default_rng(7)
    rate = rng.gamma(0.3, 0.3, 60)
    x, y = log_counts(rng, rate * 2.0, 280), log_counts(rng, rate, 600)
    assert (x == 0).mean() > 0.8
    ours = rank_sum_pvalues(x, RankReference.from_cells(y))
    expected = [mannwhitneyu(x[:, j].astype(float), y[:, j].astype(float), method="asymptotic").pvalue for j in range(x.shape[1])]
    np.testing.assert_allclose(ours, np.nan_to_num(expected, nan=1.0), rtol=1e-12, atol=1e-15)


def test_log2_fold_change_conventions():
    """0 where both pseudobulks are 0, +-inf where one is, log2 of the expm1(mean) ratio otherwise."""
    group = np.log1p(np.array([[0.0, 3.0, 0.0, 1.0], [0.0, 1.0, 2.0, 1.0]]))
    ref = np.log1p(np.array([[0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 1.0, 3.0]]))
    lfc = log2_fold_change(group.mean(axis=0), ref.mean(axis=0))
    assert lfc[0] == 0 and lfc[1] == np.inf
    np.testing.assert_allclose(lfc[2:], np.log2(np.expm1(np.log1p([[0.0, 1.0], [2.0, 1.0]]).mean(0)) / [1.0, 3.0]), rtol=1e-6)


def test_significant_genes_ranked_by_abs_fold_change():
    ctrl, true, _ = make_fixture()
    de = differential_expression(true["drugA"], ctrl)
    size = np.abs(de.lfc[de.ranked])
    assert len(de.ranked) > 50 and np.isinf(size[0]) and np.all(size[:-1] >= size[1:])


def test_reference_reused_per_control_matrix():
    ctrl = make_fixture()[0]
    assert reference_for(ctrl) is reference_for(ctrl)
    assert reference_for(ctrl.copy()) is not reference_for(ctrl)


# ---------------------------------------------------------------- best, floor, chance


def test_perfect_prediction_scores_best():
    ctrl, true, _ = make_fixture()
    drugs = [d for d in true if d != "inert"]
    truth = {d: true[d] for d in drugs}
    for d in drugs:
        data = condition(truth[d], truth[d], ctrl)
        for name in CONDITION_METRICS:
            assert METRICS[name](data) == pytest.approx(METRICS[name].best, abs=1e-12), (d, name)
    split = split_of(truth, truth, ctrl)
    for name in SPLIT_METRICS:
        np.testing.assert_allclose(METRICS[name](split), METRICS[name].best)


def test_controls_predict_no_de_genes():
    """The real controls, sampled to the truth's size as the harness does, have no significant
    gene against the controls: the overlap metrics' floor is 0 (NaN where the truth has none either:
    an inert condition is not scored for DE recovery)."""
    ctrl, true, _ = make_fixture()
    rng = np.random.default_rng(1)
    for d in true:
        sample = ctrl[np.sort(rng.choice(len(ctrl), len(true[d]), replace=False))]
        data = condition(true[d], sample, ctrl)
        for name in ["overlap_at_N", "overlap_at_50", "precision_at_50"]:
            value = METRICS[name](data)
            assert np.isnan(value) if d == "inert" else value == 0.0, (d, name)


def test_no_change_scores_chance_on_average():
    """A prediction of no change ranks conditions by the size of their true change, which is
    uninformative: on average exactly the chance level of the rank metrics."""
    ctrl, true, _ = make_fixture()
    same = {d: ctrl for d in true}
    split = split_of(true, same, ctrl)
    assert np.allclose(split.pred_deltas, 0)
    assert METRICS["centroid_accuracy"](split).mean() == pytest.approx(CHANCE_RANK)
    c = len(true)
    assert METRICS["discrimination_score_l1"](split).mean() == pytest.approx((c + 1) / (2 * c))
    for name in RANK_METRICS:
        assert METRICS[name].chance == CHANCE_RANK and METRICS[name].higher_is_better


def test_directions_and_best_values():
    for name in ["mse", "mae", "mse_delta", "mae_delta"]:
        assert METRICS[name].best == 0.0 and not METRICS[name].higher_is_better
    for name in DE_METRICS + SPLIT_METRICS:
        assert METRICS[name].best == 1.0 and METRICS[name].higher_is_better
    # no chance level where "no change" scores below an uninformative guess (the registry's contract)
    assert all(METRICS[name].chance is None for name in CONDITION_METRICS)
    assert all(METRICS[name].split_level for name in SPLIT_METRICS)


# ---------------------------------------------------------------- split-level definitions by hand


def hand_split(true: list, pred: list, cell_types: list) -> SplitData:
    true, pred = np.array(true, dtype=float), np.array(pred, dtype=float)
    return SplitData(true, pred, np.zeros_like(true), np.array(cell_types), np.array([f"d{i}" for i in range(len(true))]))


def test_centroid_accuracy_by_hand():
    """Systema: share of the other true centroids strictly farther than the prediction's own."""
    split = hand_split([[0, 0], [2, 0], [0, 2]], [[0, 0], [1, 0], [0, 3]], ["a"] * 3)
    # d1's prediction is as far from d0 as from its own truth: a tie does not count as farther
    np.testing.assert_allclose(METRICS["centroid_accuracy"](split), [1.0, 0.5, 1.0])


def test_discrimination_by_hand():
    """cell-eval: 1 - rank / C with rank = the truths nearer (L1) than its own; ties count half."""
    split = hand_split([[0, 0], [2, 0], [0, 2]], [[0, 0], [1, 0], [2, 1.5]], ["a"] * 3)
    # d1: own distance 1, d0 also 1 (tie: half a rank); d2: own 2.5, d1 nearer at 1.5, d0 at 3.5
    np.testing.assert_allclose(METRICS["discrimination_score_l1"](split), [1.0, 1 - 0.5 / 3, 1 - 1 / 3])


def test_split_metrics_compare_within_cell_type():
    """Conditions of another cell type (other controls) are not competitors."""
    alone = hand_split([[0, 0], [2, 0]], [[1.9, 0], [2, 0]], ["a", "a"])
    mixed = hand_split([[0, 0], [2, 0], [1.9, 0]], [[1.9, 0], [2, 0], [5, 5]], ["a", "a", "b"])
    for name in RANK_METRICS:
        np.testing.assert_allclose(METRICS[name](mixed)[:2], METRICS[name](alone))
        assert METRICS[name](mixed)[2] == 1.0  # alone in its cell type


# ---------------------------------------------------------------- degenerate inputs


def degenerate_conditions() -> dict[str, ConditionData]:
    rng = np.random.default_rng(3)
    genes = 30
    ctrl = log_counts(rng, np.full(genes, 0.5), 20)
    zeros = np.zeros((5, genes), dtype=np.float32)
    return {
        "one true, one predicted cell": condition(ctrl[:1] + 1, ctrl[1:2], ctrl),
        "one control cell": condition(ctrl[:4] + 1, ctrl[4:8], ctrl[:1].copy()),
        "all cells zero": condition(zeros, zeros, np.zeros((7, genes), dtype=np.float32)),
        "prediction constant": condition(ctrl[:5] + 1, np.full((5, genes), 0.3, dtype=np.float32), ctrl),
        "negative predicted values": condition(ctrl[:5] + 1, -ctrl[5:10] - 0.5, ctrl),
        "prediction equals controls": condition(ctrl[:5], ctrl, ctrl),
    }


@pytest.mark.parametrize("case", list(degenerate_conditions()))
def test_condition_metrics_finite(case):
    """Finite everywhere, except DE recovery where the truth has no significant gene (NaN: not scored)."""
    data = degenerate_conditions()[case]
    inert = len(differential_expression(data.true, data.control).ranked) == 0
    for name in CONDITION_METRICS:
        value = METRICS[name](data)
        assert np.isnan(value) if inert and name in DE_METRICS else np.isfinite(value), (case, name)


@pytest.mark.parametrize("rows", [1, 3])
def test_split_metrics_finite_on_identical_rows(rows):
    split = hand_split([[1.0, 1.0]] * rows, [[0.0, 0.0]] * rows, ["a"] * rows)
    for name in RANK_METRICS:
        values = METRICS[name](split)
        assert values.shape == (rows,) and np.all(np.isfinite(values))
    ctrl, true, _ = make_fixture()
    same = {f"d{i}": true["drugA"] for i in range(rows)}
    values = METRICS["pearson_edistance"](split_of(same, same, ctrl))  # constant effect sizes: r defined as 0
    assert values.shape == (rows,) and np.all(values == 0.0)


# ---------------------------------------------------------------- benchmarks


def wilcoxon_case(n_true: int, n_ctrl: int, genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.gamma(0.6, 1.0, genes)
    effect = np.where(rng.random(genes) < 0.1, 4.0, 1.0)
    return log_counts(rng, base, n_ctrl), log_counts(rng, base * effect, n_true), log_counts(rng, base * effect, n_true)


def score_de_metrics(ctrl: np.ndarray, true: np.ndarray, pred: np.ndarray, memo: dict) -> list[float]:
    """The four Wilcoxon metrics of one prediction, as at every epoch (truth memo kept)."""
    data = ConditionData(true=true, pred=pred, control=ctrl, de=np.arange(true.shape[1]), truth_memo=memo)
    return [METRICS[name](data) for name in DE_METRICS]


@pytest.mark.parametrize("shape", [pytest.param((25, 300, 1000), id="25x300x1000"),
                                   pytest.param((100, 5000, 2000), id="100x5000x2000", marks=pytest.mark.slow)])
def test_bench_wilcoxon_first_scoring(benchmark, shape):
    """First scoring of a condition: control reference, true DE and predicted DE."""
    ctrl, true, pred = wilcoxon_case(*shape)
    values = benchmark(lambda: score_de_metrics(ctrl.copy(), true, pred, {}))
    assert values[0] > 0.5


@pytest.mark.parametrize("shape", [pytest.param((25, 300, 1000), id="25x300x1000"),
                                   pytest.param((100, 5000, 2000), id="100x5000x2000", marks=pytest.mark.slow)])
def test_bench_wilcoxon_next_scoring(benchmark, shape):
    """Every later scoring (each epoch): only the predicted DE is new."""
    ctrl, true, pred = wilcoxon_case(*shape)
    memo: dict = {}
    first = score_de_metrics(ctrl, true, pred, memo)
    assert benchmark(score_de_metrics, ctrl, true, pred, memo) == first
