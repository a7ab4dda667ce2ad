"""Metrics over predictions.

- ``scores``: scikit-learn scores with batched versions for candidate search;
- ``calibration``: ECE (equal-width and adaptive), reliability bins, temperature scaling;
- ``selective``: risk-coverage curve, AURC, coverage at a risk, risk at a coverage;
- ``ood``: out-of-distribution scores and their AUROC, AUPR, FPR at 95% TPR;
- ``diversity``: disagreement, error correlation, ambiguity decomposition;
- ``probabilistic``: Gaussian-mixture NLL, CRPS, intervals, spread-skill, rank histogram.
"""

from ensemblex.metrics.scores import METRICS, Metric, get_metric

__all__ = ["METRICS", "Metric", "get_metric"]
