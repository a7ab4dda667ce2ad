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
