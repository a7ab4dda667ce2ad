"""XGBoost members, saved as XGBoost's JSON model."""

from __future__ import annotations

from ensemblex.members.base import TabularMember


class XGBoostMember(TabularMember):
    """An ``XGBRegressor``/``XGBClassifier`` (categorical columns as ordinal codes)."""

    family = "xgboost"
    suffix = ".json"
    library = "xgboost"
    default_encoding = "native"
    thread_param = "n_jobs"

    def save_model(self, path):
        self.model_.save_model(str(path))

    @classmethod
    def load_model(cls, path, task, settings):
        import xgboost as xgb

        model = xgb.XGBRegressor() if task == "regression" else xgb.XGBClassifier()
        try:
            model.load_model(str(path))
        except (xgb.core.XGBoostError, ValueError) as exc:  # ValueError: it decodes bad bytes
            # XGBoost appends a C++ stack trace: keep the first line only
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path}: not a readable XGBoost model ({first})") from None
        return model
