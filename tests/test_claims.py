"""The claims page: drug-level paired comparisons and the verdict rules behind it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import claims
from bench.board import Board


def frame(values: dict[str, np.ndarray], drugs: int = 12) -> pd.DataFrame:
    """Per-condition scores: two doses per drug, one cell type."""
    rows = {"cell_type": "A", "drug": np.repeat([f"D{i:02d}" for i in range(drugs)], 2), "dose": np.tile([1.0, 10.0], drugs)}
    return pd.DataFrame({**rows, **{m: np.repeat(v, 2) for m, v in values.items()}})


def test_drug_difference_is_signed_by_the_metric_direction():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, 12)
    better = base + 0.2 + rng.normal(0, 0.01, 12)
    diff, p, n = claims.drug_difference(frame({"mean": better}), frame({"mean": base}), "mean")
    assert n == 12 and diff == pytest.approx(0.2, abs=0.01) and p < 0.01
    # mse is lower-better: a larger error is a worse prediction, so the sign flips
    diff, p, _ = claims.drug_difference(frame({"mse": better}), frame({"mse": base}), "mse")
    assert diff < 0 and p < 0.01


def test_majority_rule():
    assert claims.majority(4, 0, 6) == claims.SUPPORTED
    assert claims.majority(3, 0, 6) == claims.NOT_SEPARATED
    assert claims.majority(0, 4, 6) == claims.CONTRADICTED
    assert claims.majority(0, 0, 0) == claims.MISSING


def test_pretraining_claim_reads_the_pairs():
    rng = np.random.default_rng(1)
    none = {m: rng.normal(0.5, 0.05, 12) for m in claims.PAPER_SIX}
    ahead = {m: v + 0.1 + rng.normal(0, 0.01, 12) for m, v in none.items()}
    frames = {"BERT": frame(none), "BERT_whole": frame(ahead)}
    verdict = claims.pretraining(frames)
    assert verdict.verdict == claims.SUPPORTED and "better in 6/6" in verdict.evidence
    frames = {"BERT": frame(ahead), "BERT_whole": frame(none)}
    assert claims.pretraining(frames).verdict == claims.CONTRADICTED
    frames = {"BERT": frame(none), "BERT_whole": frame(none)}
    assert claims.pretraining(frames).verdict == claims.NOT_SEPARATED


def test_speed_claim_pairs_runs_by_seed():
    results = [{"predictor": p, "seed": s, "status": "ok", "seconds_per_epoch": t}
               for s in range(6) for p, t in (("BERT", 1.0 + 0.1 * s), ("CPA", 5.0 + s))]
    verdict = claims.speed([Board("x", results=results)])
    assert verdict.verdict == claims.SUPPORTED
    assert "over 6 paired runs" in verdict.evidence and "the paper: 11.6x" in verdict.evidence
    assert claims.speed([Board("x", results=results[:1])]).verdict == claims.MISSING


def test_claims_page_has_one_row_per_claim(tmp_path):
    page = claims.render_claims({"a": [Board("a")], "b": [Board("b")]})
    rows = [line for line in page.splitlines() if line.startswith("| ") and "claim" not in line]
    assert len(rows) == len(claims.CLAIMS)
    assert all(row.count(claims.MISSING) == 2 for row in rows)
