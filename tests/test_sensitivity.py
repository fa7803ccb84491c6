"""What decides the ranking: the sensitivity panel and the strata, on hand-built per-condition frames
of three predictors (six drugs, two cell types, two doses, the low dose of two drugs inert), and the
section on the pages the publishing code writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.headline import headline
from bench.publish import write_leaderboard
from bench.sensitivity import ACTIVITY, HEADLINE, inert_components, strata, tau_to_headline, variant_scores, with_activity
from metrics import METRICS
from metrics.calibration import BASE, FLOOR

CELLS, DRUGS, DOSES = ("X", "Y"), tuple(f"D{i}" for i in range(6)), (1.0, 10.0)
BASELINE = {"delta_DE50": 0.2, "de_recall": 0.1, "energy_DE50": 2.0, "discrimination_score_l1": 0.3, "mse_delta": 1.0, "pearson_edistance": 0.2}
DE_SET = ("delta_DE50", "de_recall", "energy_DE50")  # undefined on inert conditions
# Calibrated level of each predictor on each metric: B leads the headline, A is built to win
# delta_DE50, C to win energy_DE50 and mse_delta (and cell type Y, below).
LEVELS = {
    "A": {"delta_DE50": 0.9, "de_recall": 0.1, "energy_DE50": 0.1, "discrimination_score_l1": 0.1, "mse_delta": 0.2, "pearson_edistance": 0.3},
    "B": {"delta_DE50": 0.4, "de_recall": 0.4, "energy_DE50": 0.4, "discrimination_score_l1": 0.4, "mse_delta": 0.4, "pearson_edistance": 0.5},
    "C": {"delta_DE50": 0.0, "de_recall": 0.2, "energy_DE50": 0.6, "discrimination_score_l1": 0.2, "mse_delta": 0.8, "pearson_edistance": 0.1},
}
C_ON_Y = 0.3  # C's levels are this much higher on cell type Y and lower on X: its overall scores stay put


def conditions(name: str) -> pd.DataFrame:
    """One predictor's per-condition frame: each metric at its calibrated level against the mean
    baseline (raw score placed between the baseline's and the metric's best value)."""
    rows = pd.DataFrame([(c, d, x) for c in CELLS for d in DRUGS for x in DOSES], columns=["cell_type", "drug", "dose"])
    rows["n_true"] = rows["n_pred"] = 20
    rows["active"] = ~((rows["dose"] == DOSES[0]) & rows["drug"].isin(DRUGS[:2]))
    shift = np.where(rows["cell_type"] == "Y", C_ON_Y, -C_ON_Y) if name == "C" else 0.0
    for metric, base in BASELINE.items():
        level = LEVELS[name][metric] + shift
        defined = rows["active"] | (metric not in DE_SET)
        rows[metric] = np.where(defined, base + level * (METRICS[metric].best - base), np.nan)
        rows[metric + BASE] = rows[metric + FLOOR] = np.where(defined, base, np.nan)
    return rows


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {name: conditions(name) for name in LEVELS}


def test_a_component_built_to_favour_a_predictor_puts_it_on_top(frames):
    scores = variant_scores(frames)
    assert scores[HEADLINE].idxmax() == "B"
    assert scores["delta_DE50 only"].idxmax() == "A"
    assert scores["energy_DE50 only"].idxmax() == "C"
    assert scores["mse_delta only"].idxmax() == "C"
    assert scores["delta_DE50 only"]["A"] == pytest.approx(0.9)
    # without a component: the mean of the other three, as the headline computes it
    assert scores["without delta_DE50"]["A"] == pytest.approx(np.mean([0.1, 0.1, 0.1]))
    assert list(scores)[:5] == [HEADLINE, "delta_DE50 only", "de_recall only", "energy_DE50 only", "discrimination_score_l1 only"]


def test_tau_is_one_for_the_headline_and_follows_the_order(frames):
    taus = tau_to_headline(variant_scores(frames))
    assert taus[HEADLINE] == pytest.approx(1.0)
    assert taus["mse_delta only"] == pytest.approx(-1 / 3)  # C > B > A against B > A > C
    order = pd.Series({"A": 2.0, "B": 1.0, "C": 0.0})
    flat = pd.Series({"A": 0.0, "B": 0.0, "C": 0.0})
    assert tau_to_headline({HEADLINE: order, "reversed": -order})["reversed"] == pytest.approx(-1.0)
    assert np.isnan(tau_to_headline({HEADLINE: order, "flat": flat})["flat"])


@pytest.mark.parametrize("column", ["cell_type", "dose", ACTIVITY])
def test_strata_headlines_equal_the_headline_on_the_subset(frames, column):
    frames = {n: with_activity(f) for n, f in frames.items()}
    table = strata(frames, column)
    assert list(table.index) == list(LEVELS)
    for name, frame in frames.items():
        for value in table.columns:
            assert table.loc[name, value] == pytest.approx(headline(frame[frame[column] == value]))


def test_strata_show_what_the_pooled_headline_hides(frames):
    frames = {n: with_activity(f) for n, f in frames.items()}
    by_cell = strata(frames, "cell_type")
    assert by_cell["Y"].idxmax() == "C" and by_cell["X"].idxmax() == "B"
    assert inert_components(frames) == ["discrimination_score_l1"]
    inert = strata(frames, ACTIVITY)["inert"]
    assert inert["B"] == pytest.approx(0.4) and inert["A"] == pytest.approx(0.1)  # discrimination alone


def _run_folder(folder: Path, frames: dict[str, pd.DataFrame], fold: int, drugs: list[str]) -> Path:
    """A run folder as `bench run --folds 2 --fold <fold>` writes one, holding `frames` on `drugs`."""
    summary = {"seed": 0, "split": "unseen_drugs", "fold": fold, "folds": 2, "test_drug_names": drugs}
    meta = {"command": f"bench run --folds 2 --fold {fold}", "data": {"name": "hand-built"}, "predictors": list(frames),
            "split": "unseen_drugs", "split_summary": summary}
    (folder / "run.json").parent.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(meta))
    for name, frame in frames.items():
        run = folder / "runs" / name / "seed0"
        run.mkdir(parents=True)
        record = {"predictor": name, "seed": 0, "split": "unseen_drugs", "status": "ok", "error": None,
                  "test_selected": {}, "val_selected": {}}
        (run / "result.json").write_text(json.dumps(record))
        held = frame[frame["drug"].isin(drugs)]
        pd.concat([held.assign(selection=s, epoch=0) for s in ("test_selected", "val_selected")]).to_csv(run / "conditions.csv", index=False)
    return folder


def test_pooled_and_fold_pages_carry_the_section(frames, tmp_path):
    folds = [_run_folder(tmp_path / f"fold{k}", frames, k, list(DRUGS[3 * k: 3 * k + 3])) for k in range(2)]
    out = tmp_path / "leaderboard"
    write_leaderboard(folds, out)
    pooled = (out / "unseen_drugs-pooled.md").read_text()
    assert "## What decides the ranking" in pooled and "Kendall tau compares" in pooled
    row = next(line for line in pooled.splitlines() if line.startswith("| delta_DE50 only |"))
    assert row.split(" | ")[2] == "A 0.900"
    assert "| headline | 1.00 | B " in pooled
    assert "| predictor | X (12) | Y (12) |" in pooled and "| predictor | dose 1 (12) | dose 10 (12) |" in pooled
    assert "| predictor | active (20) | inert (4) |" in pooled and "rests on the components defined there: `discrimination_score_l1`" in pooled
    fold = (out / "unseen_drugs-fold0.md").read_text()
    assert "### What decides the ranking" in fold and "| predictor | X (6) | Y (6) |" in fold
