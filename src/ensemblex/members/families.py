"""Model families: how a member is fitted, predicts, and is saved in its library's safe format.

- scikit-learn estimators: skops, loaded with an explicit allowlist of types;
- LightGBM: the booster's text model;
- XGBoost: JSON;
- CatBoost: its binary ``.cbm`` format;
- torch (``ensemblex.deep``): one safetensors file with its JSON config in the header. A torch
  model may hold several members (a deep ensemble's networks, TabM's heads): it yields
  ``ensemble_size`` columns of the predictions array.

None of them is ever pickled, and loading never unpickles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAMILIES = ("sklearn", "lightgbm", "xgboost", "catboost", "torch")

# Deep estimators a saved torch member may be: loading picks the class from this table.
TORCH_ESTIMATORS = (
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "TabMClassifier",
    "TabMRegressor",
)

# Types a saved scikit-learn member may contain beyond skops' defaults (which cover
# scikit-learn's estimators): the compiled pieces of trees, neighbours and optimisers, and
# ensemblex's own transformer. A file naming any other type is refused.
TRUSTED_SKOPS_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn.model_selection._split.KFold",
        "ensemblex.preprocessing.TextCategories",
    }
)


def family_of(estimator) -> str:
    """The family of an estimator, from the library that defines it."""
    cls = type(estimator)
    if cls.__name__ in TORCH_ESTIMATORS and cls.__module__.startswith("ensemblex.deep"):
        return "torch"
    module = type(estimator).__module__.split(".")[0]
    return {"lightgbm": "lightgbm", "xgboost": "xgboost", "catboost": "catboost"}.get(
        module, "sklearn"
    )


def fit_kwargs(family: str, categorical: list[int]) -> dict:
    """Extra ``fit`` arguments: LightGBM is told which columns are categorical codes."""
    if family == "lightgbm" and categorical:
        return {"categorical_feature": categorical}
    return {}


def limit_threads(estimator, n_threads: int = 1):
    """Set a GBDT's own thread count so that parallel folds do not oversubscribe the cores."""
    family = family_of(estimator)
    key = {
        "lightgbm": "n_jobs",
        "xgboost": "n_jobs",
        "catboost": "thread_count",
        "torch": "n_threads",
    }.get(family)
    # scikit-learn estimators already default to one thread
    if key is not None and key in estimator.get_params():
        estimator.set_params(**{key: n_threads})
    return estimator


def n_columns(model) -> int:
    """How many members (columns of the predictions array) one model yields."""
    return int(model.ensemble_size) if family_of(model) == "torch" else 1


def predict_columns(model, X: np.ndarray, task: str) -> np.ndarray:
    """Predictions ``(n_samples, n_columns(model), n_outputs)``: one slice per member."""
    if family_of(model) == "torch":
        return np.asarray(model.predict_members(X), dtype=np.float64)
    return predict_outputs(model, X, task)[:, None, :]


def predict_outputs(model, X: np.ndarray, task: str) -> np.ndarray:
    """Predictions ``(n_samples, n_outputs)``: values, or probabilities over all classes."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64).reshape(len(X), 1)
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    else:  # a LightGBM Booster loaded from text predicts probabilities directly
        proba = np.asarray(model.predict(X), dtype=np.float64)
    if proba.ndim == 1:
        proba = np.stack([1.0 - proba, proba], axis=1)
    return proba


# ---------------------------------------------------------------- save / load
_SUFFIX = {
    "sklearn": ".skops",
    "lightgbm": ".txt",
    "xgboost": ".json",
    "catboost": ".cbm",
    "torch": ".safetensors",
}


def save_model(model, family: str, path_stem: Path) -> Path:
    """Save ``model`` next to ``path_stem`` in its family's format; return the file."""
    path = path_stem.with_suffix(_SUFFIX[family])
    if family == "sklearn":
        import skops.io as sio

        sio.dump(model, path)
    elif family == "torch":
        model.save(path)
    elif family == "lightgbm":
        booster = model.booster_ if hasattr(model, "booster_") else model
        booster.save_model(str(path))
    else:  # XGBoost and CatBoost sklearn wrappers write their own formats
        model.save_model(str(path))
    return path


def load_model(path: Path, family: str, task: str):
    """Load a model saved by :func:`save_model`, without executing code from the file."""
    if family == "sklearn":
        return load_skops(path)
    if family == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))
    if family == "xgboost":
        import xgboost as xgb

        model = xgb.XGBRegressor() if task == "regression" else xgb.XGBClassifier()
        model.load_model(str(path))
        return model
    if family == "catboost":
        import catboost as cb

        model = cb.CatBoostRegressor() if task == "regression" else cb.CatBoostClassifier()
        model.load_model(str(path))
        return model
    if family == "torch":
        return load_torch(path)
    raise ValueError(f"{path}: unknown model family {family!r}; expected one of {FAMILIES}")


def load_skops(path: Path):
    """Load a skops file, refusing any type outside skops' defaults and our allowlist."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable skops file ({exc})") from None
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_TYPES)
    if refused:
        raise ValueError(f"{path}: refuses to load untrusted types {refused}")
    return sio.load(path, trusted=sorted(untrusted))


def load_torch(path: Path):
    """Load a deep estimator saved by its ``save``: the class comes from the file's JSON
    header and must be one of :data:`TORCH_ESTIMATORS`."""
    import json

    from safetensors import safe_open

    import ensemblex.deep as deep

    try:
        with safe_open(str(path), framework="pt") as fh:
            config = json.loads((fh.metadata() or {}).get("config", "{}"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    name = config.get("estimator") if isinstance(config, dict) else None
    if name not in TORCH_ESTIMATORS:
        raise ValueError(f"{path}: estimator must be one of {TORCH_ESTIMATORS}, however: {name!r}")
    return getattr(deep, name).load(path)
