"""The two references shown beside a predictor's scores, computed once per metric and kept: the
control floor (the real controls as the prediction) and the replicate reference (half of the true
cells predicting the other half)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.evaluation.sampling import REPLICATE_SEED, Sampling, condition_rng
from bench.evaluation.scoring import raw_scores
from bench.evaluation.truth import Truth
from bench.schema import Condition
from metrics import Metric
from metrics.de import rank_by_abs_t

REPLICATE_SPLITS = 3  # random halves of the truth averaged into the replicate reference


class References:
    """Raw scores of the control floor and the replicate reference per scored condition, filled
    lazily for the metrics asked for and kept for every later prediction."""

    def __init__(self, truth: Truth, sampling: Sampling):
        self.truth, self.sampling = truth, sampling
        self._floor = pd.DataFrame(index=range(len(truth.conditions)))
        self._replicate = pd.DataFrame(index=range(len(truth.conditions)))

    def floor(self, metrics: list[Metric]) -> pd.DataFrame:
        """Raw scores of the real controls as the prediction (the controls a predictor is given,
        sampled as a prediction is), per condition."""
        missing = [m for m in metrics if m.name not in self._floor]
        if missing:
            sets = {c: self.sampling.controls_for(c) for c in self.truth.conditions}
            # split-level metrics compare conditions with each other: compute them over every metric's floor at once
            self._floor = pd.concat([self._floor, raw_scores(self.truth, self.sampling, sets, missing)], axis=1)
        return self._floor[[m.name for m in metrics]]

    def replicate(self, metrics: list[Metric]) -> pd.DataFrame:
        """Reference scores: a random half of the true cells predicting the other half, averaged over
        REPLICATE_SPLITS halvings; NaN for a condition with fewer than two true cells. The DE genes
        are ranked on the truth halves only (doses pooled, as for the main lists): ranking them on
        every true cell would let the predicting half share the lists' selection noise."""
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
            mean = sum(runs) / len(runs)
            few = np.array([len(self.truth.cells[c]) < 2 for c in self.truth.conditions])
            mean.loc[few, :] = np.nan
            self._replicate = pd.concat([self._replicate, mean], axis=1)
        return self._replicate[[m.name for m in metrics]]

    def de_of(self, truth: dict[Condition, np.ndarray]) -> dict[Condition, np.ndarray]:
        """DE genes of each condition's (cell type, drug), ranked on the given true cells of all its
        scored doses against the cell type's controls."""
        pairs: dict[tuple[str, str], list[Condition]] = {}
        for c in self.truth.conditions:
            pairs.setdefault((c.cell_type, c.drug), []).append(c)
        out = {}
        for (ct, _), conds in pairs.items():
            ranked = rank_by_abs_t(np.vstack([truth[c] for c in conds]), self.truth.controls[ct], self.truth.control_stats[ct])
            out.update({c: ranked for c in conds})
        return out
