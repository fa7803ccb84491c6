"""`knn` (paper baseline): find the training drugs whose bulk response in the same cell line is
most similar to the test drug's, and return their single-cell responses at the same cell type
and dose. Bulk signatures are drug-minus-control profile means (doses pooled), compared by
Pearson r, within the target cell line; when that line has no bulk data for the drug, each drug's
in-line shifts averaged over the lines that measured it (never a drug in one line against controls
of another: predictors/signatures.py). Signatures are computed once per (drug, cell line)."""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError
from bench.schema import Condition
from metrics.correlation import standardize_rows
from predictors.base import Predictor, Task, dense
from predictors.neighbours import TrainingNeighbours
from predictors.signatures import LineMatchedShifts


class KnnBulk(Predictor):
    needs = ("bulk",)
    defaults = {"k": 5}

    def fit(self, task: Task) -> None:
        assert task.bulk is not None  # needs = ("bulk",)
        x = dense(task.bulk.X)
        self._shifts = LineMatchedShifts(task.bulk.obs, task.control, lambda rows: x[rows].mean(axis=0))
        self._signatures: dict[tuple[str, str | None], np.ndarray | None] = {}
        self._neighbours = TrainingNeighbours(task, self.config["k"], "knn")

    def _signature(self, drug: str, line: str | None) -> np.ndarray | None:
        """Mean bulk profile of `drug` minus that of the controls in `line`; with `line` None, those
        in-line shifts averaged over the lines that measured the drug. None without profiles."""
        key = (drug, line)
        if key not in self._signatures:
            self._signatures[key] = self._shifts.in_line(drug, line) if line is not None else self._shifts.averaged(drug)
        return self._signatures[key]

    def neighbours(self, condition: Condition) -> list[str]:
        """The k training drugs nearest to the condition's drug in bulk, best first."""
        line: str | None = condition.cell_type
        if self._signature(condition.drug, line) is None:
            line = None
        query = self._signature(condition.drug, line)
        if query is None:
            raise BenchError(f"knn: drug '{condition.drug}' has no bulk profiles to compare")
        names = self._neighbours.candidates(condition, lambda d: self._signature(d, line) is not None, "has bulk profiles")
        sigs = [s for d in names if (s := self._signature(d, line)) is not None]
        r = standardize_rows(np.vstack(sigs)) @ standardize_rows(query[None, :])[0]
        return self._neighbours.nearest(names, r)

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self._neighbours.cells(condition, self.neighbours(condition))
