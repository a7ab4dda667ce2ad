"""CatBoost members, saved in CatBoost's binary ``.cbm`` format."""

from __future__ import annotations

from ensemblex.members.base import TabularMember


class CatBoostMember(TabularMember):
    """A ``CatBoostRegressor``/``CatBoostClassifier`` (categorical columns as ordinal codes)."""

    family = "catboost"
    suffix = ".cbm"
    library = "catboost"
    default_encoding = "native"
    thread_param = "thread_count"

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
