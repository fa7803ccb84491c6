"""Metrics: registered pure functions scored per test condition, then averaged over conditions."""

from metrics import beyond, correlation  # noqa: F401  (importing registers the metrics)
from metrics.registry import METRICS, ConditionData, Metric, get_metrics, register_metric, score_condition

__all__ = ["METRICS", "ConditionData", "Metric", "get_metrics", "register_metric", "score_condition"]
