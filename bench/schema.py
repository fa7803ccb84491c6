"""The data model shared by every part of the harness: canonical obs columns and conditions.

Every perturbation data set is an AnnData whose ``obs`` holds the drug, the cell type (cell line)
and the dose under the canonical names below; vehicle/untreated rows carry the control label.
Loaders map external layouts onto these names, so predictors and metrics see one layout only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DRUG = "drug"
CELL_TYPE = "cell_type"
DOSE = "dose"
CONTROL = "control"
FAMILY = "drug_family"  # optional obs column: a drug's family (shared mechanism), for family hold-outs

# uns key holding DE lists (dict 'celltype_drug' -> ranked gene symbols) that override ranking.
DE_UNS_KEY = "bench_de"

# The paper's six metrics (its Table 2 columns); their mean selects the paper's (best-test) epoch.
PAPER_METRICS = ["mean", "mean_DE50", "mean_DE10", "dis", "dis_DE50", "dis_DE10"]


@dataclass(frozen=True, order=True)
class Condition:
    """One perturbation condition: a drug at a dose in a cell type."""

    cell_type: str
    drug: str
    dose: float

    @property
    def key(self) -> str:
        """'celltype_drug_dose': the dose as `:g` writes it where that is exact (10000, 0.1), else in
        full (1.0000001), so two doses never share a key."""
        return f"{self.cell_type}_{self.drug}_{dose_text(self.dose)}"


def dose_text(dose: float) -> str:
    """A dose as text that reads back as the same float: `:g` (six significant digits) where that
    is exact, else the shortest exact form."""
    short = f"{dose:g}"
    return short if float(short) == dose else repr(float(dose))


DOSE_RTOL = 1e-9  # doses are the same when they agree to this relative tolerance, in any unit


def same_dose(doses, dose: float) -> np.ndarray:
    """Which of `doses` equal `dose`, compared relatively (never with an absolute tolerance, which
    would merge molar doses such as 1e-9 and 1e-8)."""
    doses = np.asarray(doses, dtype=float)
    return np.abs(doses - dose) <= DOSE_RTOL * np.maximum(np.abs(doses), abs(dose))


class RowIndex:
    """Row positions of an obs table grouped once by (cell type, drug), labels compared as strings:
    looking up a condition then touches only its group's rows instead of scanning every row with
    string comparisons (sci-Plex3 has ~650k). Positions ascend, as `np.flatnonzero` of the
    equivalent mask gives them; doses are matched within a group by `same_dose`."""

    def __init__(self, obs: pd.DataFrame) -> None:
        labels = pd.DataFrame({CELL_TYPE: obs[CELL_TYPE].astype(str).to_numpy(), DRUG: obs[DRUG].astype(str).to_numpy()})
        self._groups: dict[tuple[str, str], np.ndarray] = labels.groupby([CELL_TYPE, DRUG], sort=False).indices
        self._doses = obs[DOSE].astype(float).to_numpy()
        self._by_drug: dict[str, np.ndarray] | None = None

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (cell type, drug) with rows, sorted."""
        return sorted(self._groups)

    def cell_types_of(self, drug: str) -> list[str]:
        """The cell types (cell lines) with rows of `drug`, sorted."""
        return sorted(ct for ct, d in self._groups if d == drug)

    def rows(self, cell_type: str | None, drug: str, dose: float | None = None) -> np.ndarray:
        """Positions of `drug`'s rows in `cell_type` (None: every cell type) at `dose` (None: every dose)."""
        if cell_type is None:
            if self._by_drug is None:
                parts: dict[str, list[np.ndarray]] = {}
                for (_, d), r in self._groups.items():
                    parts.setdefault(d, []).append(r)
                self._by_drug = {d: np.sort(np.concatenate(r)) for d, r in parts.items()}
            rows = self._by_drug.get(drug, _NO_ROWS)
        else:
            rows = self._groups.get((cell_type, drug), _NO_ROWS)
        return rows if dose is None else rows[same_dose(self._doses[rows], dose)]


_NO_ROWS = np.empty(0, dtype=np.intp)


def conditions_of(obs: pd.DataFrame, mask: np.ndarray | None = None, control: str = CONTROL) -> list[Condition]:
    """Sorted distinct treated conditions among the rows selected by `mask`."""
    sel = obs if mask is None else obs.loc[mask]
    sel = sel.loc[sel[DRUG].astype(str) != control]
    triples = sel[[CELL_TYPE, DRUG, DOSE]].drop_duplicates()
    return sorted(
        Condition(str(c), str(d), float(x))
        for c, d, x in triples.itertuples(index=False, name=None)
    )


def condition_mask(obs: pd.DataFrame, cond: Condition) -> np.ndarray:
    """Rows of `obs` that belong to condition `cond`."""
    return (
        (obs[CELL_TYPE].astype(str) == cond.cell_type)
        & (obs[DRUG].astype(str) == cond.drug)
        & same_dose(obs[DOSE].astype(float).to_numpy(), cond.dose)
    ).to_numpy()
