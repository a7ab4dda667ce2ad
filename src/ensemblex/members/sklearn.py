"""scikit-learn estimators as members, saved with skops and loaded through an allowlist."""

from __future__ import annotations

from ensemblex.members.base import TabularMember
from ensemblex.members.skops_io import TRUSTED_SKOPS_TYPES, load_skops

__all__ = ["TRUSTED_SKOPS_TYPES", "SklearnMember", "load_skops"]

_TREE_HINTS = ("Forest", "Trees", "Tree", "HistGradient")


class SklearnMember(TabularMember):
    """Any scikit-learn estimator (trees get ordinal codes, the rest one-hot), saved with
    skops."""

    family = "sklearn"
    suffix = ".skops"

    @classmethod
    def accepts(cls, estimator) -> bool:
        return hasattr(estimator, "fit") and hasattr(estimator, "predict")

    @classmethod
    def encoding_for(cls, estimator) -> str:
        name = type(estimator).__name__
        return "ordinal" if any(key in name for key in _TREE_HINTS) else "onehot"

    def save_model(self, path):
        import skops.io as sio

        sio.dump(self.model_, path)

    @classmethod
    def load_model(cls, path, task, settings):
        return load_skops(path)
