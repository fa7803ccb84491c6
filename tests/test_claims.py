"""The claims page: comparisons over the unit that was repeated, Holm within each claim, and labels
that follow the significant results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import claims
from bench.board import Board
from bench.headline import CLUSTER


def frame(values: dict[str, np.ndarray], clusters: int = 12) -> pd.DataFrame:
    """Per-condition scores: `values` per cluster, two drugs per cluster (the same score), two doses each."""
    drugs = np.repeat([f"D{i:02d}" for i in range(2 * clusters)], 2)
    rows = {"cell_type": "A", "drug": drugs, "dose": np.tile([1.0, 10.0], 2 * clusters),
            CLUSTER: np.repeat([f"C{c}" for c in range(clusters)], 4)}
    return pd.DataFrame({**rows, **{m: np.repeat(v, 4) for m, v in values.items()}})


def test_a_comparison_is_over_clusters_and_signed_by_the_metric_direction():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 12)
    better = base + 0.2 + rng.normal(0, 0.01, 12)
    cmp = claims.cluster_difference(frame({"mean": better}), frame({"mean": base}), "mean")
    assert cmp.units == 12 and cmp.difference == pytest.approx(0.2, abs=0.01) and cmp.p < 0.01  # 12 clusters, not 24 drugs
    # mse is lower-better: a larger error is a worse prediction, so the sign flips
    cmp = claims.cluster_difference(frame({"mse": better}), frame({"mse": base}), "mse")
    assert cmp.difference < 0 and cmp.p < 0.01


def test_holm_and_the_labels():
    np.testing.assert_allclose(claims.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(claims.holm([0.02, float("nan")]), [0.04, 1.0])
    assert claims.label(3, 0) == claims.SUPPORTED
    assert claims.label(0, 12) == claims.CONTRADICTED  # only against the claim, however many comparisons there are
    assert claims.label(2, 1) == claims.NOT_SEPARATED and claims.label(0, 0) == claims.NOT_SEPARATED
    assert claims.smallest_p(5) == 0.0625 and claims.smallest_p(1) == 1.0


def test_mlp_significantly_better_contradicts_the_decoder_claim():
    rng = np.random.default_rng(1)
    lstm = {m: rng.normal(0.5, 0.05, 12) for m in claims.PAPER_SIX}
    mlp = {m: v + 0.1 + rng.normal(0, 0.01, 12) for m, v in lstm.items()}
    half = {m: (v if m in claims.PAPER_SIX[:3] else lstm[m]) for m, v in mlp.items()}
    assert claims.decoder({"BERT": frame(lstm), "BERT_mlp": frame(mlp)}).verdict == claims.CONTRADICTED
    verdict = claims.decoder({"BERT": frame(lstm), "BERT_mlp": frame(half)})  # better in 3 of 6, never worse
    assert verdict.verdict == claims.CONTRADICTED and "in the claim's favour in 0, against it in 3" in verdict.evidence


def test_holm_keeps_one_marginal_result_among_many_from_deciding():
    rng = np.random.default_rng(2)
    none = {m: rng.normal(0.5, 0.05, 12) for m in claims.PAPER_SIX}
    ahead = {m: v + 0.001 * rng.permutation(np.arange(-6, 6)) for m, v in none.items()}  # balanced: p near 1
    ahead["mean"] = none["mean"] + 0.001 * np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, -10, 11, 12])  # one of twelve against
    p = claims.cluster_difference(frame({"mean": ahead["mean"]}), frame({"mean": none["mean"]}), "mean").p
    assert p == pytest.approx(0.021, abs=1e-3)  # significant alone, not after Holm over the claim's six comparisons
    verdict = claims.pretraining({"BERT": frame(none), "BERT_whole": frame(ahead)})
    assert verdict.verdict == claims.NOT_SEPARATED and "1 pairs x the six metrics: 6 comparisons over 12 clusters" in verdict.evidence


def test_few_clusters_say_that_nothing_can_be_significant():
    rng = np.random.default_rng(3)
    none = {m: rng.normal(0.5, 0.05, 4) for m in claims.PAPER_SIX}
    ahead = {m: v + 0.3 for m, v in none.items()}
    verdict = claims.pretraining({"BERT": frame(none, 4), "BERT_whole": frame(ahead, 4)})
    assert verdict.verdict == claims.NOT_SEPARATED
    assert "with 4 units the smallest two-sided Wilcoxon p is 0.125, so no comparison can be significant" in verdict.evidence


def test_a_baseline_ahead_contradicts_better_than_every_baseline():
    rng = np.random.default_rng(4)
    assert claims.DISTRIBUTION == ["energy_DE50"]  # a proper score (lower is better), not the paper's dis*
    ours = {m: rng.normal(0.5, 0.05, 12) for m in claims.DISTRIBUTION}
    frames = {"BERT_whole": frame(ours), "knn": frame({m: v - 0.1 + rng.normal(0, 0.01, 12) for m, v in ours.items()}),
              "CPA": frame({m: v + 0.1 + rng.normal(0, 0.01, 12) for m, v in ours.items()})}
    verdict = claims.distribution(frames)
    assert verdict.verdict == claims.CONTRADICTED and "knn 0+/1-/1; CPA 1+/0-/1" in verdict.evidence
    del frames["knn"]
    assert claims.distribution(frames).verdict == claims.SUPPORTED


def boards(folds: int, seeds: int = 1) -> list[Board]:
    """Folds whose CPA is slower than every BERT run and whose pre-trained runs select earlier epochs."""
    out = []
    for k in range(folds):
        results = [{"predictor": p, "seed": s, "status": "ok", "seconds_per_epoch": t, "val_epoch": e}
                   for s in range(seeds) for p, t, e in (("BERT", 1.0 + 0.1 * k, 12 + k), ("BERT_whole", 1.2, 5 + k),
                                                         ("BERT_subset", 1.1, 6), ("CPA", 5.0 + k + s, None))]
        out.append(Board(f"x-fold{k}", metas=[{"split_summary": {"fold": k, "folds": folds}}], results=results))
    return out


def test_speed_and_convergence_count_each_comparator_run_once():
    """Five folds at one seed are five units, however many BERT variants ran: no two-sided Wilcoxon
    signed-rank test over five pairs reaches p < 0.0625."""
    speed = claims.speed(boards(5))
    assert speed.verdict == claims.NOT_SEPARATED
    assert "over 5 folds" in speed.evidence and "the smallest two-sided Wilcoxon p is 0.0625" in speed.evidence
    assert "the paper: 11.6x" in speed.evidence
    assert claims.convergence(boards(5)).verdict == claims.NOT_SEPARATED
    assert claims.speed(boards(6)).verdict == claims.SUPPORTED  # six units: p = 0.031
    assert claims.convergence(boards(6)).verdict == claims.SUPPORTED
    assert "over 6 runs (board x model seed)" in claims.speed(boards(3, seeds=2)).evidence
    assert claims.speed(boards(1)[:1]).verdict == claims.MISSING


def test_claims_page_has_one_row_per_claim_and_says_what_was_tested(tmp_path):
    page = claims.render_claims({"a": [Board("a")], "b": [Board("b")]})
    rows = [line for line in page.splitlines() if line.startswith("| ") and "claim" not in line]
    assert len(rows) == len(claims.CLAIMS)
    assert all(row.count(claims.MISSING) == 2 for row in rows)
    tested = page[page.index("## What was tested"):].splitlines()
    assert sum(line.startswith("- ") for line in tested) == 2 + len(claims.CLAIMS)
    assert "- `a`: bench's PertBERT (`BERT*`): not run; pre-training (variants other than `BERT`) on a bulk set of unrecorded size" in page


def test_what_was_tested_reads_the_runs_and_table_1(tmp_path):
    meta = {"data": {"name": "toy (seed 1)", "bulk_profiles": 3171, "bulk_drugs": 200, "bulk_cell_lines": 12, "bulk_genes": 220}}
    run = {"predictor": "BERT_whole", "seed": 0, "status": "ok", "options": {"width": 64, "layers": 2, "patch": 40, "lr": 0.003}}
    board = Board("a", metas=[meta], results=[run])
    table = tmp_path / "table1.csv"
    pd.DataFrame([{"methods": "four-task", "mask_percentage": 15, "dataset": "subset", "cell_acc": 0.97, "drug_acc": 0.451,
                   "data": "toy (seed 1)"},
                  {"methods": "one-task", "mask_percentage": 80, "dataset": "subset", "cell_acc": None, "drug_acc": None,
                   "data": "toy (seed 1)"}]).to_csv(table, index=False)
    line = claims.pertbert_line([board], [pd.read_csv(table)])
    assert line == ("bench's PertBERT (`BERT*`: width 64, layers 2, patch 40; parameter count not recorded); pre-training (variants "
                    "other than `BERT`) on a bulk set of 3,171 profiles (200 drugs, 12 cell lines, 220 genes); Table 1 accuracy on "
                    "that set: four-task 15% subset: cell line 97.0%, drug 45.1%")
    board.results = [{**run, "n_parameters": 181234}]
    assert "(`BERT*`: width 64, layers 2, patch 40; 181,234 parameters)" in claims.pertbert_line([board], [])
    assert claims.pertbert_line([board], []).endswith("Table 1 accuracy on that set: not recorded")
