"""Scoring predictions against the real cells of each condition, with every registered metric.

Three rules make scores comparable across predictors (docs/metrics.md):
- every predicted set is scored at the size of the truth: a seeded sample of as many predicted cells
  as the condition has true cells, so more or duplicated cells earn nothing;
- each metric is calibrated: 0 = the mean baseline's prediction (`train_mean`), 1 = the metric's best
  value; the real controls as the prediction ("no change") are the second reference (metrics score
  "no change" at their chance level, docs/metrics.md);
- a replicate reference (half of the true cells predicting the other half) is shown beside the
  scores, never used as a divisor.

Modules: `truth` (the real cells and each condition's DE genes), `sampling` (the controls handed over and the size
rules), `scoring` (raw scores, batched requests), `references` (the mean baseline, the control floor and the replicate
reference), `evaluator` (`Evaluator`, which holds them); calibration lives in metrics.calibration.
"""

from bench.evaluation.evaluator import Evaluator
from bench.evaluation.references import REPLICATE_SPLITS
from bench.evaluation.sampling import (
    CAP_SEED,
    INPUT_QUANTILE,
    REPLICATE_SEED,
    SAMPLE_SEED,
    condition_rng,
    fixed_size,
    input_size_of,
    reference_input_size,
)
from bench.evaluation.truth import de_genes
from metrics.calibration import FLOOR_GAP, calibrate, calibrated

__all__ = ["CAP_SEED", "FLOOR_GAP", "INPUT_QUANTILE", "REPLICATE_SEED", "REPLICATE_SPLITS", "SAMPLE_SEED", "Evaluator",
           "calibrate", "calibrated", "condition_rng", "de_genes", "fixed_size", "input_size_of", "reference_input_size"]
