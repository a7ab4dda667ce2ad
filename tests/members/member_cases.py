"""The tables and fold context every member family's tests fit on."""

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, load_iris

from ensemblex.members import FoldContext
from ensemblex.preprocessing import infer_schema


def tables(task, churn_table):
    """Train rows, their targets, test rows: diabetes with a text band, churn (IDs and
    categories), iris with a text column."""
    if task == "regression":
        frame = load_diabetes(as_frame=True).frame
        frame["band"] = pd.cut(frame["bmi"], 3, labels=["low", "mid", "high"]).astype(str)
    elif task == "binary":
        frame = churn_table.head(600).rename(columns={"Exited": "target"})
    else:
        frame = load_iris(as_frame=True).frame.sample(frac=1.0, random_state=0)
        frame["petal"] = np.where(frame["petal width (cm)"] > 1.0, "wide", "narrow")
    frame = frame.reset_index(drop=True)
    y = frame.pop("target").to_numpy()
    n = int(0.75 * len(frame))
    return frame[:n], y[:n], frame[n:]


def fold_context(task, X, y):
    """The context crossfit hands a member: task, schema, classes, one thread."""
    n_classes = 0 if task == "regression" else len(np.unique(y))
    return FoldContext(task, infer_schema(X), n_classes, n_threads=1)
