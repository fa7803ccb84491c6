"""Two honest floors: no change at all, and the average training-drug effect."""

from __future__ import annotations

import numpy as np

from bench.schema import Condition
from predictors.base import Predictor, Task


class ControlCells(Predictor):
    """`control_mean`: predicts no change, returning the cell type's real control cells."""

    def fit(self, task: Task) -> None:
        pass

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return controls.copy()


class TrainMeanShift(Predictor):
    """`train_mean`: controls shifted by the mean effect of every training drug in that cell type
    at that dose (the mean of their treated cells minus the control mean)."""

    def fit(self, task: Task) -> None:
        self._shift: dict[tuple[str, float], np.ndarray] = {}
        by_key: dict[tuple[str, float], list[np.ndarray]] = {}
        for cond in task.training_conditions():
            by_key.setdefault((cond.cell_type, cond.dose), []).append(task.cells(cond.cell_type, cond.drug, cond.dose).mean(axis=0))
        for (cell_type, dose), means in by_key.items():
            self._shift[(cell_type, dose)] = np.mean(means, axis=0) - task.controls(cell_type).mean(axis=0)

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        key = (condition.cell_type, condition.dose)
        if key not in self._shift:  # dose unseen in training: average over that cell type's doses
            same = [v for (ct, _), v in self._shift.items() if ct == condition.cell_type]
            shift = np.mean(same, axis=0) if same else np.zeros(controls.shape[1], dtype=np.float32)
        else:
            shift = self._shift[key]
        return controls + shift[None, :].astype(controls.dtype)
