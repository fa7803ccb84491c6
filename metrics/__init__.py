"""Metrics: registered pure functions scored per test condition (or per split, one value per
condition), then averaged over conditions."""

from metrics import beyond, correlation, peer  # noqa: F401  (importing registers the metrics)
from metrics.registry import (
    METRICS,
    ConditionData,
    Metric,
    SplitData,
    get_metrics,
    register_metric,
    register_split_metric,
    score_condition,
)

__all__ = ["METRICS", "ConditionData", "Metric", "SplitData", "get_metrics", "register_metric",
           "register_split_metric", "score_condition"]
