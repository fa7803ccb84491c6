"""The metric registry: each metric is a small pure function with a name, a best value and a
one-line description; one registry drives the runner, the CLI listing and the leaderboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.errors import BenchError, closest
from metrics.de import mean_var


@dataclass
class ConditionData:
    """Everything a metric sees for one test condition, as dense float arrays over one gene order.

    true: (n, g) real treated cells; pred: (m, g) predicted cells; control: (c, g) real control
    cells of the same cell type; de: gene indices ranked by differential expression (best first);
    control_stats: per-gene (mean, unbiased variance) of `control`, computed once per cell type by
    the caller that scores many conditions (else on first use)."""

    true: np.ndarray
    pred: np.ndarray
    control: np.ndarray
    de: np.ndarray
    control_stats: tuple[np.ndarray, np.ndarray] | None = None
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def genes(self, top: int | None) -> np.ndarray | slice:
        return slice(None) if top is None else self.de[:top]

    def cached(self, key, compute: Callable[[], object]):
        """`compute()` once per condition, shared by every metric that asks for `key`."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

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
        return ConditionData(self.true[:, g], self.pred[:, g], self.control[:, g], np.arange(len(g)), (mean[g], var[g]))


MetricFn = Callable[[ConditionData], float]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    best: float  # the value of a perfect prediction
    higher_is_better: bool
    description: str
    family: str

    def __call__(self, data: ConditionData) -> float:
        return float(self.fn(data))


METRICS: dict[str, Metric] = {}

# Gene sets of the paper: all genes, the condition's top-50 and top-10 DE genes.
GENE_SETS: dict[str, int | None] = {"": None, "_DE50": 50, "_DE10": 10}


def register_metric(name: str, best: float, description: str, higher_is_better: bool = True, family: str | None = None):
    """Register `fn(data) -> float` under `name`."""

    def deco(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric '{name}' registered twice")
        METRICS[name] = Metric(name, fn, best, higher_is_better, description, family or name)
        return fn

    return deco


def register_gene_set_family(base: str, best: float, description: str, higher_is_better: bool = True):
    """Register `fn(data) -> float` once per gene set: `base`, `base_DE50`, `base_DE10`; each
    variant calls `fn` on the condition restricted to its gene set (`ConditionData.subset`)."""

    def deco(fn: MetricFn):
        for suffix, top in GENE_SETS.items():
            where = "all genes" if top is None else f"the top-{top} DE genes"

            def metric(data: ConditionData, _top=top) -> float:
                return fn(data.subset(_top))

            register_metric(base + suffix, best, f"{description} ({where})", higher_is_better, family=base)(metric)
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
    """Every metric for one condition."""
    return {m.name: m(data) for m in (metrics or get_metrics())}
