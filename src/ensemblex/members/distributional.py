"""Gradient-boosted members that predict a Gaussian: a mean booster and a variance booster.

:class:`LightGBMGaussian` fits LightGBM twice on a fold's rows: the mean on ``y``, then the
variance on the squared residuals ``(y - mean)^2`` with a gamma deviance and log link (its
minimiser is the conditional mean of the squared residual, the variance, whatever the
residuals' distribution). The residuals are out-of-fold within the fold (``inner_folds``
inner splits): in-sample residuals of a boosted model are far smaller than its errors on
new rows, and a variance fitted to them would be overconfident. It predicts
``(n_samples, 1, 2)`` with outputs ``("mean", "var")``, and saves both boosters as
LightGBM's own text (gzip-compressed), like :mod:`ensemblex.members.lightgbm`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold

from ensemblex.files import gzip_in_place
from ensemblex.members.base import TabularMember
from ensemblex.members.lightgbm import LightGBMMember
from ensemblex.predictions import GAUSSIAN_OUTPUTS

_MEAN_FILE, _VAR_FILE = "mean.txt", "var.txt"


def default_mean_estimator(random_state: int = 0):
    """The mean booster when none is given: 500 trees of 31 leaves at learning rate 0.05."""
    from lightgbm import LGBMRegressor

    return LGBMRegressor(
        n_estimators=500, learning_rate=0.05, num_leaves=31, random_state=random_state, verbose=-1
    )


def default_variance_estimator(random_state: int = 0):
    """The variance booster when none is given: fewer, smaller, more regularised trees than
    the mean's (squared residuals are noisy: a chi-square with one degree of freedom)."""
    from lightgbm import LGBMRegressor

    return LGBMRegressor(
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=15,
        min_child_samples=50,
        random_state=random_state,
        verbose=-1,
    )


class GaussianBoosters:
    """The fitted pair: ``mean`` and ``variance`` LightGBM boosters (``lightgbm.Booster``)."""

    def __init__(self, mean, variance):
        self.mean = mean
        self.variance = variance

    def predict(self, X) -> np.ndarray:
        """Means and variances ``(n_samples, 1, 2)``."""
        mean = np.asarray(self.mean.predict(X), dtype=np.float64)
        # the gamma objective's predict is already exp(raw score): the variance itself
        var = np.asarray(self.variance.predict(X), dtype=np.float64)
        return np.stack([mean, np.maximum(var, np.finfo(np.float64).tiny)], axis=1)[:, None, :]


class LightGBMGaussian(TabularMember):
    """A LightGBM mean and a LightGBM variance: one Gaussian column (module docstring).

    Parameters
    ----------
    name : str
    estimator : LGBMRegressor, optional
        The mean model; default :func:`default_mean_estimator`.
    encoding : str, optional
        Default ``"native"`` (categorical codes read by LightGBM).
    variance_estimator : LGBMRegressor, optional
        The variance model (its objective is set to ``"gamma"``); default
        :func:`default_variance_estimator`.
    inner_folds : int, default 3
        Inner splits of a fold's rows for out-of-fold residuals (the mean is fitted
        ``inner_folds + 1`` times per fold).
    random_state : int, default 0
        Seed of the inner splits.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from ensemblex.members.base import FoldContext
    >>> from ensemblex.preprocessing import infer_schema
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"x": rng.uniform(-1, 1, 400)})
    >>> y = X["x"].to_numpy() + rng.normal(size=400)
    >>> member = LightGBMGaussian("gbm", default_mean_estimator().set_params(n_estimators=20))
    >>> fitted = member.fit(X, y, FoldContext("regression", infer_schema(X)))
    >>> fitted.predict(X.iloc[:3]).shape, fitted.outputs()
    ((3, 1, 2), ('mean', 'var'))
    """

    family = "lightgbm_gaussian"
    suffix = ".txt"
    library = None  # never picked for a plain estimator: name this family explicitly
    default_encoding = "native"
    thread_param = "n_jobs"

    def __init__(
        self,
        name: str,
        estimator=None,
        encoding: str | None = None,
        variance_estimator=None,
        inner_folds: int = 3,
        random_state: int = 0,
    ):
        if estimator is None:
            estimator = default_mean_estimator(random_state)
        super().__init__(name, estimator, encoding)
        if variance_estimator is None:
            variance_estimator = default_variance_estimator(random_state)
        self.variance_estimator = variance_estimator
        if not isinstance(inner_folds, int | np.integer) or inner_folds < 2:
            raise ValueError(
                f"member {name!r}: inner_folds must be an int >= 2, however: "
                f"inner_folds={inner_folds!r}"
            )
        self.inner_folds = int(inner_folds)
        self.random_state = random_state

    def outputs(self):
        return GAUSSIAN_OUTPUTS

    def fit(self, X, y, context):
        if context.task != "regression":
            raise ValueError(
                f"member {self.name!r}: {self.family} predicts a Gaussian for regression, "
                f"however: task={context.task!r}"
            )
        return super().fit(X, y, context)

    def fit_model(self, estimator, X, y, context):
        categorical = self.categorical_columns(context)
        kwargs = {"categorical_feature": categorical} if categorical else {}
        y = np.asarray(y, dtype=np.float64)
        residual = np.empty_like(y)
        inner = KFold(self.inner_folds, shuffle=True, random_state=self.random_state)
        for train, valid in inner.split(X):
            model = clone(estimator).fit(X[train], y[train], **kwargs)
            residual[valid] = y[valid] - model.predict(X[valid])
        mean = estimator.fit(X, y, **kwargs).booster_
        variance = clone(self.variance_estimator).set_params(objective="gamma")
        if "n_jobs" in variance.get_params():
            variance.set_params(n_jobs=context.n_threads)
        # gamma needs positive labels: floor the squares far below any variance that matters
        floor = 1e-8 * max(float(np.var(y)), np.finfo(np.float64).tiny)
        variance.fit(X, np.maximum(residual**2, floor), **kwargs)
        return GaussianBoosters(mean, variance.booster_)

    def predict_model(self, X):
        return self.model_.predict(X)

    def save_model(self, path):  # TabularMember.save_files is replaced below: two files
        raise NotImplementedError

    def save_files(self, folder):
        from ensemblex.members.skops_io import dump_skops

        dump_skops(self.preprocessor_, folder / "preprocessor.skops")
        for file, booster in ((_MEAN_FILE, self.model_.mean), (_VAR_FILE, self.model_.variance)):
            booster.save_model(str(folder / file))
            gzip_in_place(folder / file)
        return {"encoding": self.encoding, "compression": "gzip", "inner_folds": self.inner_folds}

    @classmethod
    def load_model(cls, path, task, settings):
        folder = Path(path).parent
        boosters = [
            LightGBMMember.load_model(folder / file, task, {"compression": "gzip"})
            for file in (_MEAN_FILE, _VAR_FILE)
        ]
        return GaussianBoosters(*boosters)

    def fingerprint(self):
        return [*super().fingerprint(), repr(self.variance_estimator), self.inner_folds]

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.name!r}, {self.estimator!r}, {self.encoding!r}, "
            f"{self.variance_estimator!r}, {self.inner_folds}, {self.random_state})"
        )
