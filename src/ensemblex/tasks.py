"""Task names and label encoding shared by predictions, combiners and metrics."""

from __future__ import annotations

from typing import Literal

import numpy as np

Task = Literal["regression", "binary", "multiclass"]
TASKS: tuple[str, ...] = ("regression", "binary", "multiclass")


def check_task(task: str, name: str = "task") -> str:
    """Return ``task`` if it is a known task name, else raise a ``ValueError`` naming it."""
    if task not in TASKS:
        raise ValueError(f"{name} must be one of {', '.join(TASKS)}, however: {name}={task!r}")
    return task


def is_classification(task: str) -> bool:
    """True for binary and multiclass tasks."""
    return task != "regression"


def encode_labels(y, classes: np.ndarray, name: str = "y") -> np.ndarray:
    """Map labels ``y`` to integer codes ``0..len(classes)-1`` following ``classes``.

    Labels are matched by value first and by their string form second, so a target read
    as integers matches classes read from column names (``"m:3"``).

    Examples
    --------
    >>> encode_labels(["b", "a", "b"], np.array(["a", "b"])).tolist()
    [1, 0, 1]
    >>> encode_labels([3, 5], np.array(["3", "5"])).tolist()
    [0, 1]
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, however: {name}.shape={y.shape}")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    by_str = {str(c): i for i, c in enumerate(classes.tolist())}
    uniques, inverse = np.unique(y, return_inverse=True)
    codes = np.empty(len(uniques), dtype=np.intp)
    for j, label in enumerate(uniques.tolist()):
        code = lookup.get(label, by_str.get(str(label)))
        if code is None:
            raise ValueError(
                f"{name} holds label {label!r} that no member predicts; "
                f"expected one of {[str(c) for c in classes.tolist()]}"
            )
        codes[j] = code
    return codes[inverse]


# ---------------------------------------------------------------- task detection
# A whole-number target with 3 to this many distinct values is read as classes when nothing
# else tells (a raw data target); pass the task to override.
MAX_INTEGER_CLASSES = 10


def detect_task(
    y, task: str = "auto", *, predictions=None, layout: str | None = None, source: str = "y"
) -> str:
    """The task of target ``y``: the one rule used by ``run``, ``blend`` and ``evaluate``.

    With ``task="auto"``, on the non-missing values of ``y``:

    1. fewer than 2 rows, or a single distinct value: an error (neither a task to learn nor
       one to score; a constant target is not read as regression);
    2. ``layout`` given (a prediction table whose column names tell the task): that task,
       checked against ``y`` as an explicit one is;
    3. text, boolean or categorical labels: ``"binary"`` with 2 classes, else ``"multiclass"``;
    4. numbers with 2 distinct values: ``"binary"`` (so that a member column outside [0, 1] is
       reported as a bad probability instead of silently turning the task into regression);
    5. numbers that are not all whole: ``"regression"``;
    6. whole numbers with more than :data:`MAX_INTEGER_CLASSES` distinct values:
       ``"regression"``;
    7. whole numbers with 3 to :data:`MAX_INTEGER_CLASSES` distinct values:

       - a raw data target (``predictions`` is None): ``"multiclass"``;
       - a prediction table with one column per member (``predictions`` given): an error if
         every member value lies in [0, 1] (probabilities of some class, or predicted values
         of a small count: ambiguous), else ``"regression"``.

    An explicit ``task`` is checked against ``y``: regression needs numbers and binary at
    most 2 distinct values.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        The target; a named ``pandas.Series`` gives its name to the messages.
    task : {"auto", "regression", "binary", "multiclass"}
    predictions : array-like of shape (n_samples, n_columns), optional
        The member columns of a prediction table with one column per member (regression
        values or binary probabilities): evidence for rule 7. None for a raw data target.
    layout : {"regression", "binary", "multiclass"}, optional
        The task that a prediction table's column names imply (``<member>:<class>``:
        multiclass; ``<member>:mean``/``<member>:var`` or ``<member>:q<level>``: regression).
    source : str
        Prefix of error messages (a file name).

    Returns
    -------
    str
        ``"regression"``, ``"binary"`` or ``"multiclass"``.

    Examples
    --------
    >>> detect_task(["no", "yes", "no"])
    'binary'
    >>> detect_task([3, 5, 6, 3])
    'multiclass'
    >>> detect_task([3, 5, 6, 3], predictions=[[2.9], [5.2], [6.1], [3.3]])
    'regression'
    >>> detect_task([0.5, 1.25, 3.0])
    'regression'
    """
    import pandas as pd

    name = getattr(y, "name", None)
    label = "target" if name is None else f"target column {name!r}"
    if np.ndim(y) != 1:
        raise ValueError(
            f"{source}: the {label} must be 1-dimensional, however: shape={np.shape(y)}"
        )
    values = (y if isinstance(y, pd.Series) else pd.Series(np.asarray(y))).dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    uniques = values.unique()
    n_values = len(uniques)
    shown = sorted(uniques.tolist(), key=str)[:10]
    if task == "auto" and (len(values) < 2 or n_values < 2):
        what = f"{len(values)} row(s)" if len(values) < 2 else f"one value ({shown[0]!r})"
        raise ValueError(
            f"{source}: the {label} has {what}, so it is neither classes nor a quantity to "
            "learn or score; expected at least 2 rows and 2 distinct values"
        )
    if task == "auto" and layout is not None:
        task = layout
    if task != "auto":
        check_task(task)
        if task == "regression" and not numeric:
            raise ValueError(
                f"{source}: the {label} holds labels such as {shown[0]!r}, however: "
                "task='regression' needs numbers"
            )
        if task == "binary" and n_values > 2:
            raise ValueError(
                f"{source}: the {label} has {n_values} classes {shown}, however: "
                "task='binary' needs exactly 2"
            )
        return task
    if not numeric:
        return "binary" if n_values == 2 else "multiclass"
    if n_values == 2:
        return "binary"
    with np.errstate(invalid="ignore"):  # inf is not whole: regression, refused later
        whole = bool(np.all(np.mod(values.to_numpy(dtype=np.float64), 1) == 0))
    if not whole or n_values > MAX_INTEGER_CLASSES:
        return "regression"
    if predictions is None:
        return "multiclass"
    members = np.asarray(predictions, dtype=np.float64)
    if np.all((members >= 0) & (members <= 1)):
        raise ValueError(
            f"{source}: the {label} holds {n_values} whole numbers {shown} and every member "
            "column lies in [0, 1], so the task is ambiguous (probabilities or predicted "
            "values?); pass the task: regression, or multiclass with member columns named "
            "'<member>:<class>'"
        )
    return "regression"
