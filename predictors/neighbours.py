"""Nearest training drugs, as `knn` and `knn_structure` pick them: the candidates are the training
drugs measured in the condition's cell type at its dose (none there is an error: a neighbour search
returns real cells of that cell type and dose), the k most similar win (ties in name order), and
their real training cells are the prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.errors import BenchError
from bench.schema import Condition
from predictors.base import Task


class TrainingNeighbours:
    """The training drugs of every (cell type, dose) of a task, and the cells of those picked."""

    def __init__(self, task: Task, k: int, name: str) -> None:
        self._task, self.k, self.name = task, k, name
        self._drugs: dict[tuple[str, float], set[str]] = {}
        for cond in task.training_conditions():
            self._drugs.setdefault((cond.cell_type, cond.dose), set()).add(cond.drug)

    def candidates(self, condition: Condition, usable: Callable[[str], bool], lacking: str) -> list[str]:
        """The training drugs of the condition's cell type and dose that `usable` accepts, sorted; a
        BenchError when there is none (`lacking`: what the others lack, as the error says it)."""
        names = [d for d in sorted(self._drugs.get((condition.cell_type, condition.dose), set())) if usable(d)]
        if not names:
            raise BenchError(f"{self.name}: no training drug of {condition.cell_type} at dose {condition.dose:g} {lacking}")
        return names

    def nearest(self, names: list[str], similarity: np.ndarray) -> list[str]:
        """The k of `names` with the highest `similarity`, best first (ties in the order of `names`)."""
        return [names[i] for i in np.argsort(-similarity, kind="stable")[: self.k]]

    def cells(self, condition: Condition, drugs: list[str]) -> np.ndarray:
        """The real training cells of `drugs` in the condition's cell type at its dose, stacked."""
        return np.vstack([self._task.cells(condition.cell_type, d, condition.dose) for d in drugs])
