"""Two honest floors: no change at all, and the average training-drug effect (`train_mean`, the
mean baseline the headline is calibrated against: bench.evaluation builds the same prediction with
`mean_shifts` and `shifted`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from bench.schema import Condition
from predictors.base import Predictor, Task

Shifts = dict[tuple[str, float], np.ndarray]


class ControlCells(Predictor):
    """`control_mean`: predicts no change, returning the cell type's real control cells."""

    def fit(self, task: Task) -> None:
        pass

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return controls.copy()


def mean_shifts(conditions: Iterable[Condition], cells: Callable[[str, str, float], np.ndarray],
                controls: Callable[[str], np.ndarray]) -> Shifts:
    """Per (cell type, dose): the mean over training conditions of their treated cells' mean, minus
    the cell type's control mean. Conditions are taken in sorted order, so the same conditions give
    the same bits whoever asks."""
    by_key: dict[tuple[str, float], list[np.ndarray]] = {}
    for cond in sorted(set(conditions)):
        by_key.setdefault((cond.cell_type, cond.dose), []).append(cells(cond.cell_type, cond.drug, cond.dose).mean(axis=0))
    return {(ct, dose): np.mean(means, axis=0) - controls(ct).mean(axis=0) for (ct, dose), means in by_key.items()}


def shifted(shifts: Shifts, condition: Condition, controls: np.ndarray) -> np.ndarray:
    """`controls` moved by the condition's shift; a dose unseen in training takes the mean over that
    cell type's doses, a cell type unseen in training no shift."""
    key = (condition.cell_type, condition.dose)
    if key in shifts:
        shift = shifts[key]
    else:
        same = [v for (ct, _), v in sorted(shifts.items()) if ct == condition.cell_type]
        shift = np.mean(same, axis=0) if same else np.zeros(controls.shape[1], dtype=np.float32)
    return controls + shift[None, :].astype(controls.dtype)


class TrainMeanShift(Predictor):
    """`train_mean`: controls shifted by the mean effect of every training drug in that cell type
    at that dose (the mean of their treated cells minus the control mean)."""

    def fit(self, task: Task) -> None:
        self._shift = mean_shifts(task.training_conditions(), task.cells, task.controls)

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return shifted(self._shift, condition, controls)
