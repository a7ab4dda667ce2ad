"""CatBoost members, saved in CatBoost's binary ``.cbm`` format."""

from __future__ import annotations

from ensemblex.members.base import TabularMember


class CatBoostMember(TabularMember):
    """A ``CatBoostRegressor``/``CatBoostClassifier`` (categorical columns as ordinal codes)."""

    family = "catboost"
    suffix = ".cbm"
    thread_param = "thread_count"

    @classmethod
    def accepts(cls, estimator) -> bool:
        return type(estimator).__module__.split(".")[0] == "catboost"

    @classmethod
    def encoding_for(cls, estimator) -> str:
        return "native"

    def save_model(self, path):
        self.model_.save_model(str(path))

    @classmethod
    def load_model(cls, path, task, settings):
        import catboost as cb

        model = cb.CatBoostRegressor() if task == "regression" else cb.CatBoostClassifier()
        try:
            model.load_model(str(path))
        except cb.CatBoostError as exc:
            raise ValueError(f"{path}: not a readable CatBoost model ({exc})") from None
        return model
