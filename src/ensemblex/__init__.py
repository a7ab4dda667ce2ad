"""ensemblex: build, combine, evaluate and deploy ensembles of machine-learning models.

The center is one array, members' predictions of shape (n_samples, n_members, n_outputs),
held by :class:`Predictions`; combiners fit on its out-of-fold version.
"""

from ensemblex.combiners import (
    AutoCombiner,
    BestSingle,
    CombinerEnsemble,
    GreedySelection,
    Mean,
    Pooling,
    Stacking,
    Weighted,
)
from ensemblex.predictions import Predictions

__version__ = "0.1.0"

__all__ = [
    "AutoCombiner",
    "BestSingle",
    "CombinerEnsemble",
    "GreedySelection",
    "Mean",
    "Pooling",
    "Predictions",
    "Stacking",
    "Weighted",
    "__version__",
]
