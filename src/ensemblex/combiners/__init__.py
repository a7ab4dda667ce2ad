"""Combiners: map members' predictions (n_samples, n_members, n_outputs) to one prediction.

- ``averaging``: :class:`Mean`, :class:`BestSingle`
- ``weighted``: :class:`Weighted` (optimised convex weights)
- ``greedy``: :class:`GreedySelection` (Caruana selection with replacement)
- ``pooling``: :class:`Pooling` (log-linear pool / non-negative least squares)
- ``stacking``: :class:`Stacking` (regularised meta-models, the four-stage pipeline)
- ``layered``: :class:`CombinerEnsemble` (a weighted mean of combiners)
- ``mixture``: :class:`MixtureWeights` (Gaussian members: mixture weights and dispersion by
  CRPS or NLL)
- ``dynamic``: per-sample selection by the members' accuracy near each row: :class:`OLA`,
  :class:`LCA`, :class:`KNORAE`, :class:`KNORAU`, :class:`DESP`, :class:`METADES`,
  :class:`KNOP` (neighbours in the space of the members' outputs: no features needed)
- ``routing``: :class:`FuzzyRouting` (per-cluster weights), :class:`GatedMixture` (a softmax
  gate over members)
- ``fusion``: :class:`FeatureStacking` (a meta-model over predictions and features)
- ``labelfree``: weighting without labels: :class:`DawidSkene`,
  :class:`ProbabilisticDawidSkene`, :class:`SpectralMetaLearner`, :class:`ConsensusWeighting`
- ``features``: the original features as numbers a combiner can compare
- ``auto``: :class:`AutoCombiner` (nested cross-validation among the above, and their ensemble)
- ``base``: :class:`Combiner` (the protocol) and :class:`WeightedAverage` (a weight vector)
- ``state``, ``persistence``: a combiner's state as JSON plus arrays, saved and loaded
"""

from ensemblex.combiners.auto import AutoCombiner, available_candidates, default_candidates
from ensemblex.combiners.averaging import BestSingle, Mean
from ensemblex.combiners.base import Combiner, WeightedAverage
from ensemblex.combiners.dynamic import DESP, KNOP, KNORAE, KNORAU, LCA, METADES, OLA
from ensemblex.combiners.fusion import FeatureStacking
from ensemblex.combiners.greedy import GreedySelection
from ensemblex.combiners.labelfree import (
    ConsensusWeighting,
    DawidSkene,
    ProbabilisticDawidSkene,
    SpectralMetaLearner,
)
from ensemblex.combiners.layered import CombinerEnsemble
from ensemblex.combiners.mixture import MixtureWeights
from ensemblex.combiners.pooling import Pooling
from ensemblex.combiners.routing import FuzzyRouting, GatedMixture
from ensemblex.combiners.stacking import Stacking
from ensemblex.combiners.weighted import Weighted

__all__ = [
    "DESP",
    "KNOP",
    "KNORAE",
    "KNORAU",
    "LCA",
    "METADES",
    "OLA",
    "AutoCombiner",
    "BestSingle",
    "Combiner",
    "CombinerEnsemble",
    "ConsensusWeighting",
    "DawidSkene",
    "FeatureStacking",
    "FuzzyRouting",
    "GatedMixture",
    "GreedySelection",
    "Mean",
    "MixtureWeights",
    "Pooling",
    "ProbabilisticDawidSkene",
    "SpectralMetaLearner",
    "Stacking",
    "Weighted",
    "WeightedAverage",
    "available_candidates",
    "default_candidates",
]
