"""The metric registry: each metric is a small pure function with a name, a best value and a
one-line description; one registry drives the runner, the CLI listing and the leaderboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from bench.errors import BenchError, closest
from metrics.de import mean_var


@dataclass
class ConditionData:
    """Everything a metric sees for one test condition, as dense float arrays over one gene order.

    true: (n, g) real treated cells; pred: (m, g) predicted cells; control: (c, g) real control
    cells of the same cell type; de: the condition's significant DE gene indices, best first (empty
    for an inert condition: DE-set metrics are then NaN);
    control_stats: per-gene (mean, unbiased variance) of `control`, computed once per cell type by
    the caller that scores many conditions (else on first use)."""

    true: np.ndarray
    pred: np.ndarray
    control: np.ndarray
    de: np.ndarray
    control_stats: tuple[np.ndarray, np.ndarray] | None = None
    truth_memo: dict = field(default_factory=dict, repr=False, compare=False)
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    @overload
    def genes(self, top: int) -> np.ndarray:
        ...

    @overload
    def genes(self, top: None) -> slice:
        ...

    def genes(self, top: int | None) -> np.ndarray | slice:
        return slice(None) if top is None else self.de[:top]

    def cached(self, key, compute: Callable[[], object]):
        """`compute()` once per condition, shared by every metric that asks for `key`."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def truth_cached(self, key, compute: Callable[[], object]):
        """`compute()` once per condition for every prediction ever scored on it: only for work that
        depends on the true and control cells alone (the caller keeps `truth_memo` per condition)."""
        if key not in self.truth_memo:
            self.truth_memo[key] = compute()
        return self.truth_memo[key]

    def control_mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        if self.control_stats is None:
            self.control_stats = mean_var(self.control)
        return self.control_stats

    def subset(self, top: int | None) -> ConditionData:
        """The same condition restricted to its top DE genes (itself for all genes), built once."""
        if top is None:
            return self
        return self.cached(("subset", top), lambda: self._restrict(self.genes(top)))

    def _restrict(self, g: np.ndarray) -> ConditionData:
        mean, var = self.control_mean_var()
        memo = self.truth_memo.setdefault(("subset", len(g)), {})
        return ConditionData(self.true[:, g], self.pred[:, g], self.control[:, g], np.arange(len(g)), (mean[g], var[g]), memo)


@dataclass
class SplitData:
    """Pseudobulk view of every scored condition of a split, for metrics that compare a condition's
    prediction with the other conditions (rows in one order; float64 per-gene means).

    true_means, pred_means: (C, g) means of the true and (every) predicted cells; control_means:
    (C, g) mean of the real controls of each row's cell type; cell_types, drugs: (C,) labels;
    conditions: each row's `ConditionData` with the truth-sized sample of predicted cells (for
    metrics that need more than means)."""

    true_means: np.ndarray
    pred_means: np.ndarray
    control_means: np.ndarray
    cell_types: np.ndarray
    drugs: np.ndarray
    conditions: list[ConditionData] = field(default_factory=list)

    @property
    def true_deltas(self) -> np.ndarray:
        return self.true_means - self.control_means

    @property
    def pred_deltas(self) -> np.ndarray:
        return self.pred_means - self.control_means


MetricFn = Callable[[ConditionData], float]
SplitMetricFn = Callable[[SplitData], np.ndarray]


@dataclass(frozen=True)
class Metric:
    """A registered metric. `chance`: the expected score of an uninformative prediction, where the
    metric has one; such a metric scores "no change" at that level (a tie counts as a coin flip), so
    the real controls, the calibration floor, never sit below chance. `split_level`: `fn` takes the
    whole split's `SplitData` and returns one value per condition instead of one `ConditionData`.
    `whole_set`: scored on every predicted cell (means do not reward set size, and the paper defines
    its six that way); otherwise on a seeded sample of as many predicted cells as the truth has,
    because the metric depends on the set's size (coverage, energy distance, DE tests)."""

    name: str
    fn: Callable
    best: float  # the value of a perfect prediction
    higher_is_better: bool
    description: str
    family: str
    chance: float | None = None
    split_level: bool = False
    whole_set: bool = False

    def __call__(self, data):
        if self.split_level:
            return np.asarray(self.fn(data), dtype=np.float64)
        return float(self.fn(data))


METRICS: dict[str, Metric] = {}

# Gene sets of the paper: all genes, the condition's top-50 and top-10 DE genes.
GENE_SETS: dict[str, int | None] = {"": None, "_DE50": 50, "_DE10": 10}


def register_metric(name: str, best: float, description: str, higher_is_better: bool = True, family: str | None = None,
                    chance: float | None = None, split_level: bool = False, whole_set: bool = False):
    """Register `fn(data) -> float` under `name` (`fn(split) -> per-condition array` when `split_level`)."""

    def deco(fn):
        if name in METRICS:
            raise ValueError(f"metric '{name}' registered twice")
        METRICS[name] = Metric(name, fn, best, higher_is_better, description, family or name, chance, split_level, whole_set)
        return fn

    return deco


def register_split_metric(name: str, best: float, description: str, higher_is_better: bool = True,
                          chance: float | None = None, whole_set: bool = False):
    """Register `fn(split: SplitData) -> np.ndarray` (one value per condition) under `name`."""
    return register_metric(name, best, description, higher_is_better, chance=chance, split_level=True, whole_set=whole_set)


def register_gene_set_family(base: str, best: float, description: str, higher_is_better: bool = True,
                             whole_set: bool = False):
    """Register `fn(data) -> float` once per gene set: `base`, `base_DE50`, `base_DE10`; each
    variant calls `fn` on the condition restricted to its gene set (`ConditionData.subset`)."""

    def deco(fn: MetricFn):
        for suffix, top in GENE_SETS.items():
            where = "all genes" if top is None else f"the top-{top} DE genes"

            def metric(data: ConditionData, _top=top) -> float:
                if _top is not None and len(data.de) == 0:
                    return float("nan")  # no significant DE gene: nothing to score on (docs/metrics.md)
                return fn(data.subset(_top))

            register_metric(base + suffix, best, f"{description} ({where})", higher_is_better, family=base,
                            whole_set=whole_set)(metric)
        return fn

    return deco


def get_metrics(names: list[str] | None = None) -> list[Metric]:
    """The registered metrics named (all when None), in registration order."""
    if names is None:
        return list(METRICS.values())
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise BenchError(f"unknown metric '{unknown[0]}'{closest(unknown[0], METRICS)}")
    return [METRICS[n] for n in names]


def score_condition(data: ConditionData, metrics: list[Metric] | None = None) -> dict[str, float]:
    """Every per-condition metric for one condition (split-level metrics need the whole split)."""
    return {m.name: m(data) for m in (metrics or get_metrics()) if not m.split_level}
