"""`oracle` (reference bound, generated data only): fresh cells simulated from the true model of
the condition, as many as there are controls. Its scores bound what any predictor can reach."""

from __future__ import annotations

import zlib

import numpy as np

from bench.data.synthetic_model import simulate_cells
from bench.schema import Condition
from predictors.base import Predictor, Task


class Oracle(Predictor):
    needs = ("truth",)
    reference = True

    def fit(self, task: Task) -> None:
        assert task.truth is not None  # needs = ("truth",)
        self._truth = task.truth

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 7, zlib.crc32(condition.key.encode())])
        return simulate_cells(self._truth, condition, condition.cell_type, len(controls), rng)
