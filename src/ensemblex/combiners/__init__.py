"""Combiners: map members' predictions (n_samples, n_members, n_outputs) to one prediction.

- ``averaging``: :class:`Mean`, :class:`BestSingle`
- ``weighted``: :class:`Weighted` (optimised convex weights)
- ``greedy``: :class:`GreedySelection` (Caruana selection with replacement)
- ``pooling``: :class:`Pooling` (log-linear pool / non-negative least squares)
- ``stacking``: :class:`Stacking` (regularised meta-models, the four-stage pipeline)
- ``layered``: :class:`CombinerEnsemble` (a weighted mean of combiners)
- ``auto``: :class:`AutoCombiner` (nested cross-validation among the above, and their ensemble)
- ``base``: :class:`Combiner` (the protocol) and :class:`WeightedAverage` (a weight vector)
- ``state``, ``persistence``: a combiner's state as JSON plus arrays, saved and loaded
"""

from ensemblex.combiners.auto import AutoCombiner, available_candidates, default_candidates
from ensemblex.combiners.averaging import BestSingle, Mean
from ensemblex.combiners.base import Combiner, WeightedAverage
from ensemblex.combiners.greedy import GreedySelection
from ensemblex.combiners.layered import CombinerEnsemble
from ensemblex.combiners.pooling import Pooling
from ensemblex.combiners.stacking import Stacking
from ensemblex.combiners.weighted import Weighted

__all__ = [
    "AutoCombiner",
    "BestSingle",
    "Combiner",
    "CombinerEnsemble",
    "GreedySelection",
    "Mean",
    "Pooling",
    "Stacking",
    "Weighted",
    "WeightedAverage",
    "available_candidates",
    "default_candidates",
]
