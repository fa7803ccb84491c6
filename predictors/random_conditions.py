"""`random` (paper baseline): the cells of 5 random training conditions of the same cell type."""

from __future__ import annotations

import zlib

import numpy as np

from bench.schema import Condition
from predictors.base import Predictor, Task


class RandomConditions(Predictor):
    defaults = {"k": 5}

    def fit(self, task: Task) -> None:
        self._task = task
        self._by_cell_type: dict[str, list[Condition]] = {}
        for cond in task.training_conditions():
            self._by_cell_type.setdefault(cond.cell_type, []).append(cond)

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        pool = self._by_cell_type.get(condition.cell_type, [])
        if not pool:
            return controls.copy()
        # Seeded per condition so that results do not depend on the order of prediction.
        rng = np.random.default_rng([self.seed, zlib.crc32(condition.key.encode())])
        picks = rng.choice(len(pool), size=min(self.config["k"], len(pool)), replace=False)
        return np.vstack([self._task.cells(pool[i].cell_type, pool[i].drug, pool[i].dose) for i in picks])
