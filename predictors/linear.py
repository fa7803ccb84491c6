"""`linear`: ridge regression from a drug's bulk signature to its single-cell mean change, one model
per (cell type, dose), in the spirit of the linear baselines of Ahlmann-Eltze, Huber and Anders
(Nature Methods 2025), who found that such models match or beat deep models on perturbation
prediction. Predicted cells are the given controls shifted by the predicted change; the penalty
path is walked as epochs (predictors/ridge.py).

Features: the drug's bulk signature (in-line drug-minus-control shifts averaged over the lines that
measured it, predictors/signatures.py), standardised over the training conditions. A drug without
bulk profiles is predicted the mean training change.
"""

from __future__ import annotations

import numpy as np

from predictors.base import Task, dense
from predictors.ridge import RidgePath
from predictors.signatures import LineMatchedShifts


class LinearBulk(RidgePath):
    needs = ("bulk",)

    def features(self, task: Task, drugs: list[str]) -> dict[str, np.ndarray]:
        """Bulk signatures of `drugs`, standardised by their mean and sd over the training conditions."""
        assert task.bulk is not None  # needs = ("bulk",)
        x = dense(task.bulk.X)
        shifts = LineMatchedShifts(task.bulk.obs, task.control, lambda rows: x[rows].mean(axis=0))
        raw = {d: shifts.averaged(d) for d in drugs}
        signature = {d: s for d, s in raw.items() if s is not None}
        train = [c for c in task.training_conditions() if c.drug in signature]
        stacked = np.stack([signature[c.drug] for c in train]) if train else np.zeros((0, x.shape[1]))
        mu, sd = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
        return {d: (s - mu) / sd for d, s in signature.items()}
