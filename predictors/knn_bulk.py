"""`knn` (paper baseline): find the training drugs whose bulk response in the same cell line is
most similar to the test drug's, and return their single-cell responses at the same cell type
and dose. Bulk signatures are drug-minus-control profile means (doses pooled), compared by
Pearson r; when a cell line has no bulk data for the drug, every cell line's profiles are used."""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError
from bench.schema import CELL_TYPE, DRUG, Condition
from metrics.correlation import standardize_rows
from predictors.base import Predictor, Task, dense


class KnnBulk(Predictor):
    needs = ("bulk",)
    defaults = {"k": 5}

    def fit(self, task: Task) -> None:
        self._task = task
        bulk = task.bulk
        self._x = dense(bulk.X)
        self._drug = bulk.obs[DRUG].astype(str).to_numpy()
        self._line = bulk.obs[CELL_TYPE].astype(str).to_numpy()
        self._train = {}
        for cond in task.training_conditions():
            self._train.setdefault((cond.cell_type, cond.dose), set()).add(cond.drug)

    def _signature(self, drug: str, line: str | None) -> np.ndarray | None:
        rows = self._drug == drug
        ctrl = self._drug == self._task.control
        if line is not None:
            rows, ctrl = rows & (self._line == line), ctrl & (self._line == line)
        if not rows.any() or not ctrl.any():
            return None
        return self._x[rows].mean(axis=0) - self._x[ctrl].mean(axis=0)

    def neighbours(self, condition: Condition) -> list[str]:
        """The k training drugs nearest to the condition's drug in bulk, best first."""
        candidates = sorted(self._train.get((condition.cell_type, condition.dose), set()))
        line: str | None = condition.cell_type
        if self._signature(condition.drug, line) is None:
            line = None
        query = self._signature(condition.drug, line)
        if query is None:
            raise BenchError(f"knn: drug '{condition.drug}' has no bulk profiles to compare")
        sigs, names = [], []
        for drug in candidates:
            s = self._signature(drug, line)
            if s is not None:
                sigs.append(s)
                names.append(drug)
        if not names:
            raise BenchError(f"knn: no training drug of {condition.cell_type} at dose {condition.dose:g} has bulk profiles")
        r = standardize_rows(np.vstack(sigs)) @ standardize_rows(query[None, :])[0]
        order = np.argsort(-r, kind="stable")[: self.config["k"]]
        return [names[i] for i in order]

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        picks = self.neighbours(condition)
        return np.vstack([self._task.cells(condition.cell_type, d, condition.dose) for d in picks])
