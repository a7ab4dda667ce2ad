"""Deep members from :mod:`ensemblex.deep`: one network that yields several columns (a deep
ensemble's networks, TabM's heads), saved as one safetensors file with its JSON config."""

from __future__ import annotations

import json

import numpy as np

from ensemblex.members.base import TabularMember

# Deep estimators a saved torch member may be: loading picks the class from this table.
TORCH_ESTIMATORS = (
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "TabMClassifier",
    "TabMRegressor",
    "FusionClassifier",
    "FusionRegressor",
    "NeuralBoostingClassifier",
    "NeuralBoostingRegressor",
)


class TorchMember(TabularMember):
    """A deep estimator of :mod:`ensemblex.deep` (standardised numerics, one-hot categories);
    its ``ensemble_size`` networks or heads are as many columns of the predictions array."""

    family = "torch"
    suffix = ".safetensors"
    thread_param = "n_threads"

    @classmethod
    def accepts(cls, estimator) -> bool:
        kind = type(estimator)
        return kind.__name__ in TORCH_ESTIMATORS and kind.__module__.startswith("ensemblex.deep")

    def n_columns(self) -> int:
        model = self.model_ if self.model_ is not None else self.estimator
        return int(model.ensemble_size)

    def outputs(self):
        model = self.model_ if self.model_ is not None else self.estimator
        return getattr(model, "member_outputs", None)  # ("mean", "var") for a Gaussian head

    def predict_model(self, X):
        return np.asarray(self.model_.predict_members(X), dtype=np.float64)

    def save_model(self, path):
        self.model_.save(path)

    @classmethod
    def load_model(cls, path, task, settings):
        return load_torch(path)


def load_torch(path):
    """Load a deep estimator saved by its ``save``: the class comes from the file's JSON
    header and must be one of :data:`TORCH_ESTIMATORS`."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise ValueError(f"{path}: loading a torch member needs 'ensemblex[torch]'") from None
    try:
        with safe_open(str(path), framework="pt") as fh:
            config = json.loads((fh.metadata() or {}).get("config", "{}"))
    except Exception as exc:  # SafetensorError, OSError, JSONDecodeError
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    name = config.get("estimator") if isinstance(config, dict) else None
    if name not in TORCH_ESTIMATORS:
        raise ValueError(f"{path}: estimator must be one of {TORCH_ESTIMATORS}, however: {name!r}")
    return _estimator_class(name).load(path)


def _estimator_class(name: str):
    """The class of :data:`TORCH_ESTIMATORS` called ``name``: from :mod:`ensemblex.deep`, or
    from :mod:`ensemblex.deep.fusion` (whose classes the package does not export)."""
    import ensemblex.deep as deep
    from ensemblex.deep import fusion

    return getattr(deep, name, None) or getattr(fusion, name)
