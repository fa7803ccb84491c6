"""bench against cell-eval 0.8.2 and cell-eval2 on one sci-Plex3-shaped (real, predicted) pair:
values at parity on the metrics all three compute, and time and peak memory side by side
(tests/peers.py builds the pair and runs the tools; docs/metrics.md, "Speed against cell-eval and
cell-eval2", has the measured table).

The default test run checks parity on the small pair, every tool in this process (cell-eval2 comes
with the `peers` extra; the test skips without it). The side-by-side measurement runs only with
benchmarks enabled, each tool in a process of its own, interleaved over rounds:

    PYTEST_ADDOPTS=--benchmark-enable python -m pytest tests/test_speed_peers.py -k side_by_side

PEERS_BENCH_SIZE=small|full (default full: 192 conditions, 2,000 genes), PEERS_BENCH_ROUNDS (3) and
PEERS_BENCH_THREADS (1: OMP_NUM_THREADS, numba's and polars' threads, and the peers' `num_threads`,
the same for every tool) choose the run; extra_info holds every round's seconds and peak MB, the
ratios to bench's and the parity table. `python tests/peers.py` measures the same and prints the
tables as markdown.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pandas as pd
import pytest

from peers import CELL_TYPE, DE_METRICS, PERT, SHARED, SIZES, TOOLS, available, compare, make_pair, side_by_side

# Metrics whose definitions agree with each peer's on every condition (to rounding: cell-eval
# averages float32 data in float32); the Wilcoxon DE metrics agree exactly where the truth has a
# significant gene, and bench leaves the others unscored (docs/metrics.md, "Peer metrics").
TOLERANCE = 1e-6
GOAL = 2.0  # bench's scoring at least this many times faster than the faster peer's


def check_parity(table: pd.DataFrame, conditions: int) -> None:
    """One peer's comparison (`peers.compare`) within TOLERANCE, with the expected coverage."""
    for metric in SHARED:
        row = table.loc[metric]
        assert row["max_abs_diff"] <= TOLERANCE, (metric, row.to_dict())
        assert row["bench_only"] == 0, (metric, row.to_dict())
        if metric in DE_METRICS:  # the peers score inert conditions (0 on the overlaps); bench: NaN
            assert row["conditions"] + row["peer_only"] <= conditions and row["conditions"] > 0, (metric, row.to_dict())
        else:
            assert row["conditions"] == conditions and row["peer_only"] == 0, (metric, row.to_dict())


@pytest.fixture(scope="module")
def small_scores(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """Each tool's scores of the small pair, computed in this process."""
    from peers import read_bench, score_bench, score_cell_eval, score_cell_eval2

    real, pred = make_pair(SIZES["small"], seed=0)
    folder = tmp_path_factory.mktemp("peers")
    real.write_h5ad(folder / "real.h5ad")
    pred.write_h5ad(folder / "pred.h5ad")
    scores = {"bench": score_bench(*read_bench(folder / "real.h5ad", folder / "pred.h5ad"))}
    if importlib.util.find_spec("cell_eval"):
        scores["cell-eval"] = score_cell_eval(real, pred, threads=1, workdir=folder)
    if importlib.util.find_spec("cell_eval2"):
        scores["cell-eval2"] = score_cell_eval2(real, pred, threads=1)
    return {t: s[s[PERT] != "control"] for t, s in scores.items()}


@pytest.mark.parametrize("peer", ["cell-eval", "cell-eval2"])
def test_small_pair_scores_at_parity(small_scores, peer):
    if peer not in small_scores:
        pytest.skip(f"{peer} is not installed (the `test` extra brings cell-eval, the `peers` extra cell-eval2)")
    ours, theirs = small_scores["bench"], small_scores[peer]
    conditions = SIZES["small"].conditions
    assert len(ours) == conditions * len(SHARED)
    check_parity(compare(ours, theirs), conditions)
    # where bench leaves a DE metric unscored (no significant true gene), the peers call it a miss or nothing
    inert = ours[ours["metric"] == "overlap_at_N"].set_index([CELL_TYPE, PERT])["value"].isna()
    assert inert.any() and not inert.all()
    peer_overlap = theirs[theirs["metric"] == "overlap_at_N"].set_index([CELL_TYPE, PERT])["value"]
    assert (peer_overlap[inert[inert].index] == 0).all()


def test_raw_scores_are_the_scored_columns_and_the_floor_copies_nothing(tmp_path):
    """`Evaluator.raw` (what the measurement times) is `score`'s raw columns; the floor's sets are
    read-only views of the controls, not a copy per condition; with no training drugs the mean
    baseline is the floor (scored once)."""
    from bench.commands.score import PredictedCells
    from bench.evaluation import Evaluator
    from bench.schema import conditions_of
    from peers import CONTROL, read_bench

    real, pred = make_pair(SIZES["small"], seed=1)
    real.write_h5ad(tmp_path / "real.h5ad")
    pred.write_h5ad(tmp_path / "pred.h5ad")
    truth, predicted = read_bench(tmp_path / "real.h5ad", tmp_path / "pred.h5ad")
    shared = sorted(set(conditions_of(truth.obs, control=CONTROL)))
    evaluator = Evaluator(truth, shared, CONTROL, subset_controls=False, training=[])
    names = ["mse", "delta", "overlap_at_N", "discrimination_score_l1", "dis"]
    sets = PredictedCells(predicted, shared)
    raw = evaluator.raw(sets, names)
    scored = evaluator.score(sets, names, replicate=False)
    pd.testing.assert_frame_equal(raw[names].reset_index(drop=True), scored[names].reset_index(drop=True))
    for c, cells in evaluator.references._sets["floor"].items():
        assert not cells.flags.writeable and np.shares_memory(cells, evaluator.truth.controls[c.cell_type])
    np.testing.assert_array_equal(scored[[n + "_base" for n in names]].to_numpy(), scored[[n + "_floor" for n in names]].to_numpy())


@pytest.mark.benchmark(group="scoring a pair: bench, cell-eval, cell-eval2")
def test_side_by_side(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("a measurement: run with --benchmark-enable (PEERS_BENCH_SIZE=small for a quick one)")
    missing = [why for tool in TOOLS if (why := available(tool))]
    if missing:
        pytest.skip("; ".join(missing))
    size = os.environ.get("PEERS_BENCH_SIZE", "full")
    shape = SIZES[size]
    rounds, threads = int(os.environ.get("PEERS_BENCH_ROUNDS", "3")), int(os.environ.get("PEERS_BENCH_THREADS", "1"))
    result = benchmark.pedantic(side_by_side, args=(tmp_path, shape, rounds, threads), rounds=1, iterations=1)
    scores = {t: pd.read_csv(p) for t, p in result["scores"].items()}
    parity = {t: compare(scores["bench"], scores[t]) for t in TOOLS if t != "bench"}
    benchmark.extra_info.update(size=size, shape=result["shape"], threads=threads, best=result["best"], ratios=result["ratios"],
                                round_ratios=result["round_ratios"], load=result["load"],
                                parity={t: p.reset_index().to_dict(orient="records") for t, p in parity.items()})
    for table in parity.values():
        check_parity(table, shape.conditions)
    faster_peer = min(result["best"][t]["score_s"] for t in TOOLS if t != "bench")
    assert faster_peer / result["best"]["bench"]["score_s"] >= GOAL, result["best"]
    assert np.isfinite([result["best"][t]["peak_mb"] for t in TOOLS]).all()
