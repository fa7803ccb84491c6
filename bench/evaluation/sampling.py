"""The size rules every predicted set passes and the controls handed to predictors: how many
controls a predictor transforms, the seeded cap on oversized sets and the truth-sized sample."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np

from bench.errors import BenchError
from bench.evaluation.truth import Truth
from bench.schema import CONTROL, Condition, RowIndex, conditions_of

INPUT_QUANTILE = 0.9  # the controls handed over per condition cover this share of conditions' cell counts

# Seeds of the per-condition samples: the predicted set and the control floor use the same draw, so
# a predictor that returns the controls scores exactly the floor.
SAMPLE_SEED, REPLICATE_SEED = 0, 1
CAP_SEED = 7  # the sample that caps an oversized predicted set at the input size


def input_size_of(adata: ad.AnnData, conditions: Iterable[Condition], control: str = CONTROL) -> int:
    """Controls to hand a predictor per condition: the smallest power of two at least the
    INPUT_QUANTILE quantile of the cell counts of `conditions` (the run passes its training
    conditions). Scored sets larger than that are filled by drawing predicted cells again
    (`fixed_size`), the same rule for every predictor and for the control floor."""
    index = RowIndex(adata.obs)
    counts = [len(index.rows(c.cell_type, c.drug, c.dose)) for c in conditions]
    counts = [n for n in counts if n > 0]
    if not counts:
        raise BenchError("no conditions with cells to size the control input from")
    return 1 << max(0, int(np.ceil(np.quantile(counts, INPUT_QUANTILE))) - 1).bit_length()


def reference_input_size(adata: ad.AnnData, scored: list[Condition], control: str = CONTROL) -> int | None:
    """`input_size_of` the treated conditions of `adata` that are not being scored (for an
    evaluator built without the run's training conditions); None when there are none."""
    others = sorted(set(conditions_of(adata.obs, None, control)) - set(scored))
    return input_size_of(adata, others, control) if others else None


def condition_rng(cond: Condition, purpose: int) -> np.random.Generator:
    """A generator seeded by the condition alone: every predictor gets the same draws."""
    return np.random.default_rng([zlib.crc32(cond.key.encode()), purpose])


def fixed_size(cells: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` rows of `cells`: a random subset when there are at least `n` (the rows themselves when
    exactly `n`), else every row once plus a random draw with replacement for the rest."""
    m = len(cells)
    if m == n:
        return cells
    if m > n:
        return cells[np.sort(rng.choice(m, n, replace=False))]
    return cells[np.concatenate([np.arange(m), rng.integers(0, m, n - m)])]


class Sampling:
    """The controls predictors transform (and the floor uses) and the sizes of the sets scored:
    the same rules for every predictor, seeded by cell type or condition alone."""

    def __init__(self, truth: Truth, input_size: int, subset_controls: bool = True):
        self.truth = truth
        self.input_size = input_size
        self.subset = subset_controls  # False: every control, for predictions made elsewhere (`bench score`)
        self.given = {ct: self._input_controls(c, ct) if subset_controls else c for ct, c in truth.controls.items()}

    def _input_controls(self, controls: np.ndarray, cell_type: str) -> np.ndarray:
        """The control cells predictors transform for this cell type: `input_size` of them (every
        control when there are fewer), a seeded subset in a seeded order. The size comes from other
        conditions' cell counts (`input_size_of`), never from the scored conditions' cells, so what a
        predictor is handed says nothing about the cells it is scored on (their number tracks the
        drug's toxicity, i.e. its effect)."""
        rng = np.random.default_rng([zlib.crc32(cell_type.encode()), SAMPLE_SEED])
        return controls[rng.permutation(len(controls))[: self.input_size]]

    def input_rows(self, condition: Condition) -> int:
        """How many control cells a predictor transforms for `condition`: the same for every
        condition of a cell type (all its given controls), whatever the condition's true cells."""
        return len(self.given[condition.cell_type])

    def controls_for(self, condition: Condition) -> np.ndarray:
        """A copy of the control cells a predictor transforms for `condition` (and the floor uses)."""
        return self.given[condition.cell_type][: self.input_rows(condition)].copy()

    def floor_set(self, condition: Condition) -> np.ndarray:
        """The cells of `controls_for` as a read-only view, one array for every condition of a cell
        type: the floor scores them and never transforms them, so it needs no copy per condition
        (thousands of controls for each of hundreds of conditions would be gigabytes)."""
        view = self.given[condition.cell_type][: self.input_rows(condition)].view()
        view.flags.writeable = False
        return view

    # What a predictor may see: copies of the controls, through a function with no path back here.
    def control_source(self, rows: int | None = None) -> Callable[[str], np.ndarray]:
        """A plain function: cell type -> a fresh copy of the control cells to transform (the first
        `rows` of the seeded subset of `_input_controls`; all of it when None)."""
        controls = {ct: given[:rows] for ct, given in self.given.items()}
        return lambda cell_type: controls[cell_type].copy()

    def cap(self, cond: Condition, cells: np.ndarray) -> np.ndarray:
        """Equal sets for every predictor: at most `input_size` predicted cells (as many as it was
        handed controls; a seeded sample of larger sets, such as knn's and random's training cells),
        all of a set when controls are not subset (`bench score`)."""
        if not self.subset or len(cells) <= self.input_size:
            return cells
        return cells[np.sort(condition_rng(cond, CAP_SEED).choice(len(cells), self.input_size, replace=False))]

    def sample(self, cond: Condition, cells: np.ndarray) -> np.ndarray:
        """The set that is scored: as many of `cells` as the condition has true cells (seeded by the
        condition, the same draw for every predictor)."""
        return fixed_size(cells, len(self.truth.cells[cond]), condition_rng(cond, SAMPLE_SEED))
