"""The references beside a predictor's scores, computed once per metric and kept: the mean baseline
(`train_mean`'s prediction, the headline's 0), the control floor (the real controls as the
prediction, "no change") and the replicate reference (half of the true cells predicting the other
half)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.evaluation.sampling import REPLICATE_SEED, Sampling, condition_rng
from bench.evaluation.scoring import raw_scores
from bench.evaluation.truth import Truth, de_genes
from bench.schema import Condition
from metrics import Metric

REPLICATE_SPLITS = 3  # random halves of the truth averaged into the replicate reference


class References:
    """Raw scores of the control floor and the replicate reference per scored condition, filled
    lazily for the metrics asked for and kept for every later prediction."""

    def __init__(self, truth: Truth, sampling: Sampling, baseline: dict[Condition, np.ndarray] | None = None):
        """`baseline`: the mean baseline's predicted set per scored condition (None: the controls)."""
        self.truth, self.sampling = truth, sampling
        controls = {c: sampling.floor_set(c) for c in truth.conditions}
        self._sets = {"floor": controls, "baseline": controls if baseline is None else baseline}
        self._scores = {name: pd.DataFrame(index=range(len(truth.conditions))) for name in self._sets}
        self._replicate = pd.DataFrame(index=range(len(truth.conditions)))

    def _reference(self, name: str, metrics: list[Metric]) -> pd.DataFrame:
        """Raw scores of a fixed reference prediction, per condition, filled for missing metrics."""
        if self._sets[name] is self._sets["floor"]:
            name = "floor"  # no training conditions: the mean baseline is the controls, scored once
        missing = [m for m in metrics if m.name not in self._scores[name]]
        if missing:
            # split-level metrics compare conditions with each other: compute them over every metric's reference at once
            scored = raw_scores(self.truth, self.sampling, self._sets[name], missing)
            self._scores[name] = pd.concat([self._scores[name], scored], axis=1)
        return self._scores[name][[m.name for m in metrics]]

    def floor(self, metrics: list[Metric]) -> pd.DataFrame:
        """Raw scores of the real controls as the prediction (the controls a predictor is given,
        sampled as a prediction is), per condition: "no change"."""
        return self._reference("floor", metrics)

    def baseline(self, metrics: list[Metric]) -> pd.DataFrame:
        """Raw scores of the mean baseline's prediction per condition: the headline's 0."""
        return self._reference("baseline", metrics)

    def replicate(self, metrics: list[Metric]) -> pd.DataFrame:
        """Reference scores: a random half of the true cells predicting the other half, averaged over
        REPLICATE_SPLITS halvings; NaN for a condition with fewer than two true cells. The DE genes
        are chosen on the truth halves only (as the main lists are on the whole truth): choosing them
        on every true cell would let the predicting half share the lists' selection noise."""
        missing = [m for m in metrics if m.name not in self._replicate]
        if missing:
            runs = []
            for k in range(REPLICATE_SPLITS):
                halves = {}
                for c in self.truth.conditions:
                    true = self.truth.cells[c]
                    order = condition_rng(c, REPLICATE_SEED + k).permutation(len(true))
                    half = max(1, len(true) // 2)
                    halves[c] = (true[order[:half]], true[order[half:]] if len(true) > 1 else true)
                truth = {c: h[1] for c, h in halves.items()}
                predicted = {c: h[0] for c, h in halves.items()}
                runs.append(raw_scores(self.truth, self.sampling, predicted, missing, truth=truth, de=self.de_of(truth)))
            mean = pd.concat(runs).groupby(level=0).mean()  # a halving whose truth is inert leaves NaN: skipped
            few = np.array([len(self.truth.cells[c]) < 2 for c in self.truth.conditions])
            mean.loc[few, :] = np.nan
            self._replicate = pd.concat([self._replicate, mean], axis=1)
        return self._replicate[[m.name for m in metrics]]

    def de_of(self, truth: dict[Condition, np.ndarray]) -> dict[Condition, np.ndarray]:
        """Each condition's DE genes chosen on the given true cells (`truth.de_genes`)."""
        return {c: de_genes(truth[c], self.truth.controls[c.cell_type], self.truth.control_stats[c.cell_type])
                for c in self.truth.conditions}
