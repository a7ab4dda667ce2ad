"""Models trained elsewhere: used as they are, never refit, fed the table's raw columns."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer

from ensemblex.members.base import FoldContext, Member


class PrefittedMember(Member):
    """An already-fitted model (a scikit-learn pipeline, a GBDT wrapper...).

    Every fold "fits" it by wrapping it, untouched, in the member family of its library, with
    a pass-through of all the table's columns (ID-like ones included) as a DataFrame; it is
    then saved and loaded like any member of that family. Its out-of-fold predictions are its
    predictions on the training rows, so it is only honest if the model never saw those rows.

    Parameters
    ----------
    name : str
    model : fitted estimator with ``predict`` (and ``predict_proba`` for classification)
    """

    family = "prefitted"

    def __init__(self, name: str, model):
        super().__init__(name)
        if not hasattr(model, "predict"):
            raise TypeError(f"member {name!r}: a prefitted model needs a predict method")
        self.model = model

    @property
    def classes(self):
        """The classes the model predicts, if it says."""
        return getattr(self.model, "classes_", None)

    def fit(self, X, y, context: FoldContext):
        from ensemblex.members.registry import family_for

        family = family_for(self.model)
        inner = family(self.name, self.model, "raw")
        inner.task = context.task
        columns = [c for c in context.schema.dtypes if c in X.columns]
        inner.preprocessor_ = (
            ColumnTransformer([("raw", "passthrough", columns)], verbose_feature_names_out=False)
            .set_output(transform="pandas")
            .fit(X)
        )
        inner.model_ = inner.adopt(self.model)
        return inner

    def predict(self, X):
        raise ValueError(f"member {self.name!r}: a prefitted member predicts once fitted")

    def save_files(self, folder):
        raise ValueError(f"member {self.name!r}: a prefitted member is saved once fitted")

    @classmethod
    def load_files(cls, folder, name, task, settings):
        raise ValueError(f"{folder}: prefitted members are saved under their model's family")

    def fingerprint(self):
        return [self.name, self.family, repr(self.model)]


def prefitted(name: str, model) -> PrefittedMember:
    """An already-fitted member: never refit, it predicts from the raw feature columns.

    Its out-of-fold predictions are its predictions on the training rows, so it is only
    honest if the model never saw those rows.
    """
    return PrefittedMember(name, model)
