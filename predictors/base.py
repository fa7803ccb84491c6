"""The one interface every predictor implements, and the task the harness hands to `fit`.

A predictor is fitted once on a `Task` (training single cells with every control, the bulk set,
the names of the conditions it will be asked about) and then, for each test condition, turns that
cell type's real control cells into a set of predicted cells. Trainable predictors call
`task.report_epoch(...)` after each epoch; the harness then evaluates and times that epoch.
"""

from __future__ import annotations

import importlib.util
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.data.combinations import is_combination
from bench.schema import CONTROL, DRUG, Condition, RowIndex, conditions_of

PREDICT_ROWS = 16384  # (condition, control cell) rows a batched predictor decodes at once


def dense(x) -> np.ndarray:
    """A dense float32 copy of a (possibly sparse) expression block."""
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def by_cell_type(conditions: Iterable[Condition]) -> dict[str, list[Condition]]:
    """Conditions grouped by cell type (first-seen order): a batched `predict_many` transforms each
    cell type's controls once for all of its conditions."""
    groups: dict[str, list[Condition]] = {}
    for c in conditions:
        groups.setdefault(c.cell_type, []).append(c)
    return groups


def row_chunks(conditions: list[Condition], rows: Callable[[Condition], int], limit: int) -> Iterator[list[Condition]]:
    """Consecutive runs of `conditions` whose rows (`rows(c)` each) add up to about `limit`: the
    conditions a batched `predict_many` decodes in one pass (at least one per run)."""
    chunk: list[Condition] = []
    total = 0
    for c in conditions:
        if chunk and total + rows(c) > limit:
            yield chunk
            chunk, total = [], 0
        chunk.append(c)
        total += rows(c)
    if chunk:
        yield chunk


def gaussian_cells(distribution: dict[Condition, tuple[np.ndarray, np.ndarray]], seed: int,
                   sample: bool) -> dict[Condition, np.ndarray]:
    """Cells from per-condition Gaussians (mean, sd per control cell and gene): with `sample`, one
    draw each, seeded by `seed` and the condition (the same cells alone or batched); else the means."""
    out = {}
    for condition, (mean, std) in distribution.items():
        if sample:
            rng = np.random.default_rng([seed, zlib.crc32(condition.key.encode())])
            mean = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
        out[condition] = mean
    return out


@dataclass(frozen=True)
class Memory:
    """A run's peak resident memory in a pool process: `base` GiB (the interpreter, torch, the
    predictor's packages and fixed buffers) plus `factor` x the data's dense bytes
    (`bench.data.Benchmark.dense_bytes`: the single-cell matrix as dense plus the bulk matrix), which
    covers the process's copy of the data, its evaluators and what the predictor builds from them.
    Measured per predictor with tests/bench_worker_memory.py (docs/statistics.md#memory-and-the-pool)."""

    base: float  # GiB
    factor: float

    def peak(self, data_bytes: int) -> int:
        """The estimated peak in bytes on data of `data_bytes` dense bytes."""
        return int(self.base * (1 << 30) + self.factor * data_bytes)


# A predictor that declares no `memory`: above every built-in predictor's measured base and factor.
DEFAULT_MEMORY = Memory(base=2.0, factor=6.0)


class StopTraining(Exception):
    """Raised by `Task.report_epoch` when the harness ends training early (no validation gain for
    `patience` epochs); let it propagate out of `fit`: the selected epochs' predictions are kept."""


@dataclass
class Task:
    """What a predictor may see while fitting. `train` never holds a validation or test cell."""

    train: ad.AnnData  # training drugs' cells and every control, canonical obs columns
    bulk: ad.AnnData | None  # the bulk set, held-out drugs included (they are "seen in bulk")
    test_conditions: list[Condition]  # conditions predict() will be called with (labels only)
    val_conditions: list[Condition]  # held-out training-split drugs, for model selection
    seed: int = 0
    control: str = CONTROL
    cache_dir: Path = Path(".bench-cache")  # checkpoints may be stored and reused here
    max_epochs: int | None = None  # harness override of a trainable predictor's epoch count
    truth: dict | None = None  # generating parameters (generated data only; for the oracle)
    on_epoch: Callable[[int, dict], None] = field(default=lambda epoch, stats: None, repr=False)
    _index: RowIndex | None = field(default=None, init=False, repr=False, compare=False)

    def report_epoch(self, epoch: int, **stats: float) -> None:
        """Call after each training epoch (1-based); the harness evaluates the model at this point and
        may raise `StopTraining` to end training early."""
        self.on_epoch(epoch, stats)

    def epochs(self, default: int) -> int:
        return self.max_epochs if self.max_epochs is not None else default

    def controls(self, cell_type: str) -> np.ndarray:
        """Dense control cells of `cell_type` from the training set."""
        return self.cells(cell_type, self.control)

    def cells(self, cell_type: str, drug: str, dose: float | None = None) -> np.ndarray:
        """Dense training cells of `drug` in `cell_type` (at `dose`, or every dose when None)."""
        return dense(self.train.X[self.rows(cell_type, drug, dose)])

    def rows(self, cell_type: str, drug: str, dose: float | None = None) -> np.ndarray:
        """Positions in `train` of `drug`'s cells in `cell_type` (at `dose`, or every dose when None);
        the training rows are grouped on first use, so repeated look-ups never rescan them."""
        if self._index is None:
            self._index = RowIndex(self.train.obs)
        return self._index.rows(cell_type, drug, dose)

    def training_conditions(self) -> list[Condition]:
        """Treated conditions present in the training set."""
        return conditions_of(self.train.obs, control=self.control)

    @property
    def genes(self) -> np.ndarray:
        return np.asarray(self.train.var_names)


class Predictor(ABC):
    """Base class: implement `fit` and `predict`; set `trainable` if `fit` reports epochs.

    `needs` lists inputs the predictor cannot work without ("bulk", "truth"); `packages` lists
    importable modules it requires. The harness skips a predictor whose needs are unmet and records why.
    """

    trainable: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()
    packages: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict] = {}
    search_space: ClassVar[dict[str, list]] = {}  # option -> candidate values, tried with `bench run --search`
    reference: ClassVar[bool] = False  # a bound, not a method (e.g. the oracle)
    # Whether the predictor takes a drug combination `A+B` as a condition of its own; None: only when
    # it has no `needs` and no `packages` (see bench/data/combinations.py). One that cannot is skipped,
    # with the reason, when the split's conditions (training ones included) hold a combination.
    combinations: ClassVar[bool | None] = None
    # A run's peak memory in a pool process (`Memory`), from which the pool chooses its number of
    # processes. The built-ins' are in `predictors.MEMORY`; a plug-in that declares none gets DEFAULT_MEMORY.
    memory: ClassVar[Memory | None] = None

    def __init__(self, seed: int = 0, **config) -> None:
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {', '.join(sorted(unknown))}")
        self.seed = seed
        self.config = {**self.defaults, **config}

    @classmethod
    def unavailable(cls, task: Task) -> str | None:
        """Why this predictor cannot run on `task`, or None when it can."""
        missing = [p for p in cls.packages if importlib.util.find_spec(p) is None]
        if missing:
            return f"missing package(s): {', '.join(missing)} (see README: optional extras)"
        if "bulk" in cls.needs and task.bulk is None:
            return "needs a bulk data set (--bulk)"
        if "bulk" in cls.needs:
            assert task.bulk is not None  # the check above returned
            measured = set(task.bulk.obs[DRUG].astype(str))
            held = sorted({c.drug for c in [*task.test_conditions, *task.val_conditions]
                           if not is_combination(c.drug)} - measured)
            if held:
                return (f"needs bulk profiles of every held-out drug; none for {', '.join(held[:3])}"
                        + (f" and {len(held) - 3} more" if len(held) > 3 else "")
                        + " (the seeded splits hold out only drugs with bulk profiles)")
        if "truth" in cls.needs and task.truth is None:
            return "needs the generating parameters (only generated data has them)"
        return None

    @abstractmethod
    def fit(self, task: Task) -> None:
        """Learn from the task; trainable predictors call `task.report_epoch` after each epoch."""

    @abstractmethod
    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        """Predicted cells (rows) over the task's genes for `condition`, given that cell type's
        real control cells (rows, same genes). Return a float array of shape (n_pred, n_genes)."""

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """Predict several conditions; override to batch. `controls(cell_type)` gives control cells."""
        return {c: self.predict(c, controls(c.cell_type)) for c in conditions}
