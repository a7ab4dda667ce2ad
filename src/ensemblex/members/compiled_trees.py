"""Tree members through Treelite's runtime (GTIL), for serving one row at a time.

scikit-learn forests, LightGBM and XGBoost pay a fixed cost per call (joblib dispatch,
input validation, a thread team): one churn row through a 150-tree random forest takes
0.7 ms, through XGBoost 1.3 ms; Treelite's General Tree Inference Library answers in
0.06-0.09 ms. A member is switched only after its Treelite model gave the member's own
predictions on probe rows: exactly for scikit-learn forests, within 1e-6 for LightGBM and
XGBoost (a multiclass softmax, XGBoost's float32 sums: differences of 1e-8 to 3e-7). Used
by ``ensemblex serve`` (the ``serve`` extra installs Treelite); without it nothing changes.
"""

from __future__ import annotations

import logging

import numpy as np

from ensemblex.members.base import one_column

log = logging.getLogger(__name__)

# Largest difference from the member's own predictions accepted on the probe rows.
TOLERANCE = {"sklearn": 0.0, "lightgbm": 1e-6, "xgboost": 1e-6}
# The most rows a twin predicts: GTIL (a reference runtime) wins on a few rows and loses on
# many (churn, ms for 1 / 8 / 64 rows, the member's library against GTIL: random forest
# 0.72/1.34/4.81 against 0.11/0.76/9.20; XGBoost 0.97/0.88/1.59 against 0.16/0.24/1.50;
# LightGBM 0.19/0.30/1.37 against 0.11/0.46/3.57). Larger batches go to the library.
MAX_ROWS = {"sklearn": 8, "lightgbm": 1, "xgboost": 32}


class TreeliteModel:
    """A member's trees as a Treelite model: ``predict(Z)`` on encoded rows gives what the
    member's ``predict_model`` gives."""

    def __init__(self, model, task: str, float32: bool, max_rows: int):
        self.model = model
        self.task = task
        self.float32 = float32
        self.max_rows = max_rows

    def predict(self, Z) -> np.ndarray | None:
        """Predictions ``(n, 1, n_outputs)``, or None for rows holding infinities: the
        member's library decides what those mean (scikit-learn refuses them)."""
        import treelite

        Z = np.ascontiguousarray(Z, dtype=np.float32 if self.float32 else np.float64)
        if np.isinf(Z).any():
            return None
        out = np.asarray(treelite.gtil.predict(self.model, Z, nthread=1))
        out = out.reshape(len(Z), -1).astype(np.float64)
        if self.task == "regression" or out.shape[1] == 1:
            out = out[:, 0]
        return one_column(out, self.task)


def compile_member(member, probe) -> bool:
    """Give ``member`` (a fitted tabular member) a Treelite twin when it is a tree model
    Treelite reads and the twin predicts ``probe`` (a table of rows) as the member does.
    Returns whether it did."""
    try:
        import treelite
    except ImportError:
        return False
    family = getattr(member, "family", None)
    model = getattr(member, "model_", None)
    if family not in TOLERANCE or model is None:
        return False
    try:
        if family == "sklearn":
            from sklearn.ensemble._forest import ForestClassifier, ForestRegressor

            if not isinstance(model, ForestClassifier | ForestRegressor) or model.n_outputs_ != 1:
                return False
            converted, float32 = treelite.sklearn.import_model(model), True
        elif family == "lightgbm":
            converted, float32 = treelite.frontend.from_lightgbm(model), False
        else:
            converted, float32 = treelite.frontend.from_xgboost(model.get_booster()), True
        twin = TreeliteModel(converted, member.task, float32, MAX_ROWS[family])
        Z = member.encode(probe)
        expected = member.predict_model(Z)
        got = twin.predict(Z)
    except Exception as exc:  # a model Treelite does not read: the member stays as it is
        log.debug("member %s: not compiled (%s)", member.name, exc)
        return False
    if got.shape != expected.shape or not np.all(np.abs(got - expected) <= TOLERANCE[family]):
        return False
    member.twin_ = twin
    return True
