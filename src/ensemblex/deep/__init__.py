"""Deep ensembles in PyTorch (the ``torch`` extra).

- members as one batched computation: :class:`DeepEnsembleClassifier` /
  :class:`DeepEnsembleRegressor` (MLPs or small CNNs), :class:`TabMClassifier` /
  :class:`TabMRegressor` (TabM's k heads);
- members along one run: :func:`train_snapshots` (snapshots, online model and its EMA twin),
  evaluated together by :func:`stacked_predictions`;
- members fitted one after another on the ensemble's loss gradient (GrowNet-style boosting):
  :class:`NeuralBoostingClassifier` / :class:`NeuralBoostingRegressor`;
- feature-level fusion: :class:`FusionClassifier` / :class:`FusionRegressor` (a head over the
  members' concatenated penultimate embeddings);
- weight space: :func:`uniform_soup`, :func:`greedy_soup`, :func:`wise_ft`;
- distillation into one student: :func:`distill`, :func:`flops_per_sample`,
  :func:`share_of_gain_kept`;
- one training loop under all of them: :func:`ensemblex.deep.training.train`.
"""

from ensemblex.deep.batched import BatchedLinear, BatchedMLP
from ensemblex.deep.boosting import NeuralBoostingClassifier, NeuralBoostingRegressor
from ensemblex.deep.checkpoints import SnapshotRun, stacked_predictions, train_snapshots
from ensemblex.deep.cnn import BatchedCNN, SmallCNN
from ensemblex.deep.distillation import distill, flops_per_sample, share_of_gain_kept
from ensemblex.deep.ensemble import DeepEnsembleClassifier, DeepEnsembleRegressor
from ensemblex.deep.fusion import FusionClassifier, FusionRegressor
from ensemblex.deep.soups import greedy_soup, make_score_fn, uniform_soup, wise_ft
from ensemblex.deep.tabm import TabMClassifier, TabMRegressor

__all__ = [
    "BatchedCNN",
    "BatchedLinear",
    "BatchedMLP",
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "FusionClassifier",
    "FusionRegressor",
    "NeuralBoostingClassifier",
    "NeuralBoostingRegressor",
    "SmallCNN",
    "SnapshotRun",
    "TabMClassifier",
    "TabMRegressor",
    "distill",
    "flops_per_sample",
    "greedy_soup",
    "make_score_fn",
    "share_of_gain_kept",
    "stacked_predictions",
    "train_snapshots",
    "uniform_soup",
    "wise_ft",
]
