"""Metrics over predictions: scores now; calibration, selective prediction, OOD and diversity
belong here too."""

from ensemblex.metrics.scores import METRICS, Metric, get_metric

__all__ = ["METRICS", "Metric", "get_metric"]
