"""Golden-file regression test of the scores: `Evaluator` on the smoke data reproduces, to 1e-12,
every column (metrics, floors, baselines, `_norm`, `_replicate`) of tests/data/evaluator_reference.csv.gz.

The golden file was written by `write_reference` when scoring version 3 was introduced. Regenerate
it only on a deliberate scoring change, which must also bump `SCORING_VERSION` in bench/cache.py:
`write_reference(Evaluator, load_default("smoke", seed=0))` from this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import Benchmark
from bench.evaluation import Evaluator
from bench.schema import CELL_TYPE
from predictors.base import dense
from splits import get_split
from splits.base import TEST, TRAIN

GOLDEN = Path(__file__).parent / "data" / "evaluator_reference.csv.gz"
SET = "prediction_set"  # the column naming which of the fixed prediction sets a row scores


def reference_frame(evaluator_cls: type, smoke: Benchmark) -> pd.DataFrame:
    """Scores of three fixed prediction sets on the test conditions of the default `unseen_drugs`
    split: the controls themselves (asked through `score_predictor`), a seeded shifted copy of a few
    of them (fewer cells than the truth) and seeded draws of training cells (more than the input size)."""
    split = get_split("unseen_drugs", smoke.sc)
    ev = evaluator_cls(smoke.sc, split.conditions(smoke.sc.obs, TEST))
    controls = ev.control_source()
    rng = np.random.default_rng(1)
    shifted = {}
    for c in ev.conditions:
        cells = controls(c.cell_type)[:12]
        shifted[c] = cells + rng.normal(0.3, 0.2, cells.shape[1]) + rng.normal(0.0, 0.05, cells.shape)
    train = smoke.sc[split.mask(TRAIN)]
    pool = {ct: dense(train.X[np.flatnonzero(train.obs[CELL_TYPE].to_numpy() == ct)]) for ct in sorted({c.cell_type for c in ev.conditions})}
    drawn = {c: pool[c.cell_type][np.sort(rng.choice(len(pool[c.cell_type]), 3 * ev.input_size, replace=False))] for c in ev.conditions}
    frames = [ev.score_predictor(lambda conds, given: {c: given(c.cell_type) for c in conds}).assign(**{SET: "controls"}),
              ev.score(shifted).assign(**{SET: "shifted_controls"}), ev.score(drawn).assign(**{SET: "training_cells"})]
    return pd.concat(frames, ignore_index=True)


def write_reference(evaluator_cls: type, smoke: Benchmark, path: Path = GOLDEN) -> None:
    """Write the golden file (gzip without a time stamp, so the same scores give the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    reference_frame(evaluator_cls, smoke).to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def test_scores_match_the_golden_file(smoke):
    expected = pd.read_csv(GOLDEN, float_precision="round_trip")
    actual = reference_frame(Evaluator, smoke)
    assert list(actual.columns) == list(expected.columns)
    for column in actual.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(actual[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float),
                                       rtol=0, atol=1e-12, equal_nan=True, err_msg=column)
        else:
            assert actual[column].astype(str).tolist() == expected[column].tolist(), column
