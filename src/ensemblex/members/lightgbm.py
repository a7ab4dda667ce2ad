"""LightGBM members: categorical codes read natively, saved as the booster's text model."""

from __future__ import annotations

from ensemblex.members.base import TabularMember, one_column


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
        self.model_.save_model(str(path))

    @classmethod
    def load_model(cls, path, task, settings):
        import lightgbm as lgb

        try:
            return lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise ValueError(f"{path}: not a readable LightGBM model ({exc})") from None
