"""The package's one task rule, branch by branch, and on real targets."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from ensemblex.tasks import MAX_INTEGER_CLASSES, detect_task

PROBS = np.array([[0.1], [0.9], [0.4], [0.6]])  # member columns inside [0, 1]
VALUES = np.array([[1.2], [2.9], [3.1], [0.7]])  # member columns outside [0, 1]


@pytest.mark.parametrize(
    ("y", "kwargs", "expected"),
    [
        # labels: text, booleans, categoricals
        (["no", "yes", "no", "yes"], {}, "binary"),
        (["a", "b", "c", "a"], {}, "multiclass"),
        ([True, False, True, True], {}, "binary"),
        (pd.Series(["x", "y", "z", "x"], dtype="category"), {}, "multiclass"),
        # two numbers are binary, whatever they are
        ([0, 1, 1, 0], {}, "binary"),
        ([1.5, 2.5, 2.5, 1.5], {}, "binary"),
        ([0, 1, 1, 0], {"predictions": VALUES}, "binary"),
        # numbers that are not whole are regression
        ([0.5, 1.25, 3.0, 2.0], {}, "regression"),
        ([1.0, 2.0, np.nan, 2.5], {}, "regression"),  # NaN is ignored
        # whole numbers: many values are regression, a few are classes in raw data
        (np.arange(MAX_INTEGER_CLASSES + 1), {}, "regression"),
        (np.arange(MAX_INTEGER_CLASSES), {}, "multiclass"),
        ([3.0, 5.0, 6.0, 3.0], {}, "multiclass"),  # whole-valued floats too
        # ... and regression in a prediction table whose members predict values
        ([3, 5, 6, 3], {"predictions": VALUES}, "regression"),
        # the layout of a prediction table's names decides, the target only checked
        ([3, 5, 6, 3], {"layout": "regression"}, "regression"),
        ([0.5, 1.5, 2.5, 0.5], {"layout": "multiclass"}, "multiclass"),
        # an explicit task that fits the target is returned as is
        ([0, 1, 1, 0], {"task": "regression"}, "regression"),
        ([0, 1, 1, 0], {"task": "multiclass"}, "multiclass"),
        ([0.5, 1.25, 3.0, 2.0], {"task": "multiclass"}, "multiclass"),
        (["yes", "yes"], {"task": "binary"}, "binary"),  # one class: fine when told
    ],
)
def test_rule(y, kwargs, expected):
    assert detect_task(y, **kwargs) == expected


@pytest.mark.parametrize(
    ("y", "kwargs", "message"),
    [
        ([4.2], {}, r"has 1 row\(s\)"),
        ([np.nan, 2.0, np.nan], {}, r"has 1 row\(s\)"),
        ([7, 7, 7], {}, r"has one value \(7\)"),
        (["spam", "spam"], {}, "has one value \\('spam'\\)"),
        ([7, 7, 7], {"layout": "regression"}, "has one value"),
        ([3, 5, 6, 3], {"predictions": PROBS}, "ambiguous .* pass the task"),
        (["a", "b", "a"], {"task": "regression"}, "task='regression' needs numbers"),
        (["a", "b", "a"], {"layout": "regression"}, "task='regression' needs numbers"),
        ([0, 1, 2, 1], {"task": "binary"}, r"has 3 classes \[0, 1, 2\]"),
        ([0, 1, 2, 1], {"task": "ranking"}, "task must be one of"),
        (np.zeros((2, 2)), {}, "1-dimensional"),
    ],
)
def test_errors(y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        detect_task(y, source="data.csv", **kwargs)


def test_messages_name_the_file_and_column():
    y = pd.Series([3, 5, 6, 3], name="grade")
    with pytest.raises(ValueError, match=r"^oof.csv: the target column 'grade' holds 3 whole"):
        detect_task(y, predictions=PROBS, source="oof.csv")


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (load_breast_cancer, "binary"),
        (load_iris, "multiclass"),
        (load_wine, "multiclass"),
        (load_diabetes, "regression"),  # whole numbers, 214 distinct values
    ],
)
def test_real_targets(load, expected):
    y = load(return_X_y=True)[1]
    assert detect_task(y) == expected
    assert detect_task(pd.Series(y, name="target")) == expected


def test_bundled_churn_target():
    from importlib import resources

    from ensemblex.tables import read_data

    frame = read_data(resources.files("ensemblex") / "data" / "churn_modelling.csv")
    assert detect_task(frame["Exited"]) == "binary"
    assert detect_task(frame["Age"]) == "regression"  # whole numbers, many values
    assert detect_task(frame["NumOfProducts"]) == "multiclass"  # 1..4
