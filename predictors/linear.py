"""`linear`: ridge regression from a drug's bulk signature to its single-cell mean change, one model
per (cell type, dose), in the spirit of the linear baselines of Ahlmann-Eltze, Huber and Anders
(Nature Methods 2025), who found that such models match or beat deep models on perturbation
prediction. Predicted cells are the given controls shifted by the predicted change.

Features: the drug's bulk signature (in-line drug-minus-control shifts averaged over the lines that
measured it, predictors/signatures.py), standardised over the training drugs. Targets: the mean of
a training condition's cells minus the cell type's control mean. The intercept is the mean training
change, so at strong regularisation `linear` is `train_mean`. The regularisation path is walked
from strong to weak, one value per reported epoch, so the harness chooses it on the validation drugs
exactly as it chooses any trainable predictor's epoch.
"""

from __future__ import annotations

import numpy as np

from bench.schema import Condition
from predictors.base import Predictor, Task, dense
from predictors.signatures import LineMatchedShifts


class _Ridge:
    """Ridge fits of one (cell type, dose) for any penalty, from one SVD of the centred features."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x_mean, self.y_mean = x.mean(axis=0), y.mean(axis=0)
        u, self.s, self.vt = np.linalg.svd(x - self.x_mean, full_matrices=False)
        self.uty = u.T @ (y - self.y_mean)

    def change(self, x: np.ndarray, alpha: float) -> np.ndarray:
        """Predicted mean change for feature rows `x` at penalty `alpha` (relative to the largest
        squared singular value, so one grid fits every data set)."""
        scale = alpha * (self.s[0] ** 2 if self.s.size else 1.0)
        coef = self.vt.T @ ((self.s / (self.s**2 + scale))[:, None] * self.uty)
        return self.y_mean + (x - self.x_mean) @ coef


class LinearBulk(Predictor):
    trainable = True
    needs = ("bulk",)
    combinations = False
    defaults = {"alphas": (10.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)}  # strongest first, x s_max^2

    def fit(self, task: Task) -> None:
        assert task.bulk is not None  # needs = ("bulk",)
        x = dense(task.bulk.X)
        shifts = LineMatchedShifts(task.bulk.obs, task.control, lambda rows: x[rows].mean(axis=0))
        drugs = sorted({c.drug for c in [*task.training_conditions(), *task.test_conditions, *task.val_conditions]})
        raw = {d: shifts.averaged(d) for d in drugs}
        self._signature = {d: s for d, s in raw.items() if s is not None}
        train = [c for c in task.training_conditions() if c.drug in self._signature]
        stacked = np.stack([self._signature[c.drug] for c in train]) if train else np.zeros((0, x.shape[1]))
        self._mu, self._sd = stacked.mean(axis=0), stacked.std(axis=0) + 1e-6
        control_means = {ct: task.controls(ct).mean(axis=0) for ct in {c.cell_type for c in train}}
        groups: dict[tuple[str, float], list[Condition]] = {}
        for c in train:
            groups.setdefault((c.cell_type, c.dose), []).append(c)
        self._models = {
            key: _Ridge(np.stack([self._features(c.drug) for c in conds]),
                        np.stack([task.cells(c.cell_type, c.drug, c.dose).mean(axis=0) - control_means[c.cell_type] for c in conds]))
            for key, conds in groups.items()
        }
        alphas = list(self.config["alphas"])[: task.epochs(len(self.config["alphas"]))]
        for epoch, alpha in enumerate(alphas, start=1):
            self._alpha = alpha
            task.report_epoch(epoch, alpha=alpha)

    def _features(self, drug: str) -> np.ndarray:
        return (self._signature[drug] - self._mu) / self._sd

    def _model(self, condition: Condition) -> _Ridge | None:
        """The condition's (cell type, dose) model, else that cell type's model at the nearest dose."""
        if (condition.cell_type, condition.dose) in self._models:
            return self._models[(condition.cell_type, condition.dose)]
        doses = [d for ct, d in self._models if ct == condition.cell_type]
        if not doses:
            return None
        nearest = min(doses, key=lambda d: abs(np.log10(d + 1.0) - np.log10(condition.dose + 1.0)))
        return self._models[(condition.cell_type, nearest)]

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        model = self._model(condition)
        if model is None:
            return controls.copy()
        if condition.drug in self._signature:
            change = model.change(self._features(condition.drug)[None, :], self._alpha)[0]
        else:  # no bulk profile: the intercept, i.e. the mean training change
            change = model.y_mean
        return controls + change[None, :].astype(controls.dtype)
