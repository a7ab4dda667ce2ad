"""A small zoo with the rows' features: out-of-fold and test predictions of a few
scikit-learn models, for the combiners that read features (routing, fusion)."""

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ensemblex import Predictions
from ensemblex.tasks import encode_labels


class FeatureZoo:
    """Out-of-fold and test predictions of a small zoo with the rows' features."""

    def __init__(self, X, y, members, task, classes=None):
        stratify = None if task == "regression" else y
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.3, random_state=0, stratify=stratify
        )
        method = "predict" if task == "regression" else "predict_proba"
        cv = (KFold if task == "regression" else StratifiedKFold)(5, shuffle=True, random_state=0)
        oof = [cross_val_predict(est, X_tr, y_tr, cv=cv, method=method) for est in members]
        test = [getattr(est.fit(X_tr, y_tr), method)(X_te) for est in members]
        oof, test = np.stack(oof, axis=1), np.stack(test, axis=1)
        if task == "regression":
            oof, test = oof[..., None], test[..., None]
        names = [f"m{j}" for j in range(len(members))]
        self.oof = Predictions(oof, names, task, classes=classes)
        self.test = Predictions(test, names, task, classes=classes)
        self.X, self.y, self.X_test, self.y_test = X_tr, y_tr, X_te, y_te
        self.task = task

    def codes(self, y):
        return y if self.task == "regression" else encode_labels(y, self.oof.classes)


def scaled(model):
    return make_pipeline(StandardScaler(), model)
