"""Ridge regression from a per-drug feature vector to the single-cell mean change, one model per
(cell type, dose), its penalty path walked as epochs: the machinery of `linear` (bulk signatures)
and `ridge_structure` (fingerprints). Targets: the mean of a training condition's cells minus the
cell type's control mean. The intercept is the mean training change, so at strong regularisation
the prediction is `train_mean`'s. The path runs from strong to weak, one penalty per reported epoch,
so the harness chooses it on the validation drugs exactly as it chooses any trainable predictor's
epoch. Predicted cells are the given controls shifted by the predicted change."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from bench.schema import Condition
from predictors.base import Predictor, Task


class Ridge:
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


class RidgePath(Predictor):
    """Base of the ridge baselines: implement `features`; a drug without features is predicted the
    intercept (the mean training change)."""

    trainable = True
    combinations = False
    defaults = {"alphas": (10.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)}  # strongest first, x s_max^2

    @abstractmethod
    def features(self, task: Task, drugs: list[str]) -> dict[str, np.ndarray]:
        """drug -> feature row, for those of `drugs` (training and held-out) that have one."""

    def fit(self, task: Task) -> None:
        drugs = sorted({c.drug for c in [*task.training_conditions(), *task.test_conditions, *task.val_conditions]})
        self._features = self.features(task, drugs)
        train = [c for c in task.training_conditions() if c.drug in self._features]
        control_means = {ct: task.controls(ct).mean(axis=0) for ct in {c.cell_type for c in train}}
        groups: dict[tuple[str, float], list[Condition]] = {}
        for c in train:
            groups.setdefault((c.cell_type, c.dose), []).append(c)
        self._models = {
            key: Ridge(np.stack([self._features[c.drug] for c in conds]),
                       np.stack([task.cells(c.cell_type, c.drug, c.dose).mean(axis=0) - control_means[c.cell_type] for c in conds]))
            for key, conds in groups.items()
        }
        alphas = list(self.config["alphas"])[: task.epochs(len(self.config["alphas"]))]
        for epoch, alpha in enumerate(alphas, start=1):
            self._alpha = alpha
            task.report_epoch(epoch, alpha=alpha)

    def _model(self, condition: Condition) -> Ridge | None:
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
        if condition.drug in self._features:
            change = model.change(self._features[condition.drug][None, :], self._alpha)[0]
        else:  # no features: the intercept, i.e. the mean training change
            change = model.y_mean
        return controls + change[None, :].astype(controls.dtype)
