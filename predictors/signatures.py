"""Bulk drug signatures matched by cell line: a drug's profiles in a cell line minus that line's own
control profiles, averaged over the lines that measured both. L1000 cell lines differ in baseline
more than many drugs move them, and a drug is measured in a few lines while controls come from all:
a drug mean minus the mean of every control would encode which lines measured the drug."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bench.schema import RowIndex


class LineMatchedShifts:
    """Drug-minus-control shifts of a bulk set, from any per-row representation: `mean(rows)` gives
    the mean of those rows (raw profiles for knn and cVAE, encoder embeddings for PertBERT).
    Control means are computed once per line."""

    def __init__(self, obs: pd.DataFrame, control: str, mean: Callable[[np.ndarray], np.ndarray]) -> None:
        self.index, self.control, self.mean = RowIndex(obs), control, mean
        self._control_means: dict[str, np.ndarray | None] = {}

    def _control_mean(self, line: str) -> np.ndarray | None:
        if line not in self._control_means:
            rows = self.index.rows(line, self.control)
            self._control_means[line] = self.mean(rows) if rows.size else None
        return self._control_means[line]

    def in_line(self, drug: str, line: str) -> np.ndarray | None:
        """The drug's mean minus the line's control mean; None without either in that line."""
        rows, base = self.index.rows(line, drug), self._control_mean(line)
        return self.mean(rows) - base if rows.size and base is not None else None

    def averaged(self, drug: str) -> np.ndarray | None:
        """The mean over the lines that measured the drug (and have controls) of its in-line shift;
        None when no line has both."""
        shifts = [s for line in self.index.cell_types_of(drug) if (s := self.in_line(drug, line)) is not None]
        return np.mean(shifts, axis=0) if shifts else None
