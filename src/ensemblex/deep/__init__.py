"""Deep ensembles in PyTorch (the ``torch`` extra): members as one batched computation."""

from ensemblex.deep.batched import BatchedLinear, BatchedMLP
from ensemblex.deep.ensemble import DeepEnsembleClassifier, DeepEnsembleRegressor
from ensemblex.deep.tabm import TabMClassifier, TabMRegressor

__all__ = [
    "BatchedLinear",
    "BatchedMLP",
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "TabMClassifier",
    "TabMRegressor",
]
