"""LightGBM members: categorical codes read natively, saved as the booster's text model
(gzip-compressed)."""

from __future__ import annotations

from pathlib import Path

from ensemblex.files import gzip_in_place, read_gzip
from ensemblex.members.base import TabularMember, one_column
from ensemblex.members.lightgbm_text import check_model_text


class LightGBMMember(TabularMember):
    """An ``LGBMRegressor``/``LGBMClassifier``; after fitting only its ``Booster`` is kept,
    exactly as it is read back from the text file."""

    family = "lightgbm"
    suffix = ".txt"
    library = "lightgbm"
    default_encoding = "native"
    thread_param = "n_jobs"

    def fit_model(self, estimator, X, y, context):
        categorical = self.categorical_columns(context)
        kwargs = {"categorical_feature": categorical} if categorical else {}
        return estimator.fit(X, y, **kwargs).booster_

    def adopt(self, model):
        return getattr(model, "booster_", model)

    def predict_model(self, X):
        # a booster predicts values, P(class 1) for binary, or (n, k) probabilities
        return one_column(self.model_.predict(X), self.task)

    def save_model(self, path):
        # LightGBM's own text, compressed: a 300-tree model shrinks from 2 MB to 0.4 MB
        self.model_.save_model(str(path))
        gzip_in_place(path)

    def model_settings(self):
        return {"compression": "gzip"}

    @classmethod
    def load_model(cls, path, task, settings):
        import lightgbm as lgb

        path = Path(path)
        if settings.get("compression") == "gzip":  # models saved before 0.1: plain text
            path = path.with_name(path.name + ".gz")
            data = read_gzip(path)
        else:
            data = path.read_bytes()
        problem = check_model_text(data)
        if problem:
            raise ValueError(f"{path}: not a readable LightGBM model ({problem})")
        try:
            return lgb.Booster(model_str=data.decode("utf-8"))
        except lgb.basic.LightGBMError as exc:
            raise ValueError(f"{path}: not a readable LightGBM model ({exc})") from None
