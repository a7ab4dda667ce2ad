"""ensemblex: build, combine, evaluate and deploy ensembles of machine-learning models.

The center is one array, members' predictions of shape (n_samples, n_members, n_outputs),
held by :class:`Predictions`; combiners fit on its out-of-fold version.
"""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
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


def __getattr__(name: str):
    # Imported on first use, so that `ensemblex --help` (and anything importing a light
    # module of the package) does not pay for scikit-learn and scipy.
    if name == "Predictions":
        from ensemblex.predictions import Predictions

        return Predictions
    if name in __all__:
        import ensemblex.combiners as combiners

        return getattr(combiners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
