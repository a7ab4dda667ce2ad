"""The predictions array ``(n_samples, n_members, n_outputs)`` and its validated container.

What the outputs are is named by ``Predictions.outputs``:

- regression, a value per member: ``("value",)``;
- regression, a Gaussian per member: ``("mean", "var")`` with ``var >= 0``;
- regression, quantiles per member: ``("q0.1", "q0.5", "q0.9")`` (levels in (0, 1),
  increasing; :func:`quantile_outputs` builds the names);
- classification: the classes (as text), probabilities summing to one.

Reading and writing wide tables lives in :mod:`ensemblex.tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ensemblex.tasks import check_task, is_classification

# Tolerance on a multiclass row of probabilities summing to one.
SIMPLEX_ATOL = 1e-3

VALUE_OUTPUTS: tuple[str, ...] = ("value",)
GAUSSIAN_OUTPUTS: tuple[str, ...] = ("mean", "var")


def quantile_outputs(levels) -> tuple[str, ...]:
    """Output names of quantile levels, ``q<level>``.

    Examples
    --------
    >>> quantile_outputs([0.05, 0.5, 0.95])
    ('q0.05', 'q0.5', 'q0.95')
    """
    return tuple(f"q{float(q):g}" for q in np.atleast_1d(np.asarray(levels, dtype=float)))


def quantile_levels(outputs) -> np.ndarray | None:
    """The levels of ``q<level>`` output names, or None unless every name is one.

    Examples
    --------
    >>> quantile_levels(("q0.1", "q0.9")).tolist()
    [0.1, 0.9]
    >>> quantile_levels(("mean", "var")) is None
    True
    """
    levels = []
    for name in outputs:
        name = str(name)
        if not name.startswith("q"):
            return None
        try:
            levels.append(float(name[1:]))
        except ValueError:
            return None
    return np.asarray(levels, dtype=np.float64) if levels else None


@dataclass(frozen=True, eq=False)
class Predictions:
    """Members' predictions for the same rows, validated once at construction.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_members, n_outputs)
        Regression: ``n_outputs = 1`` (a value), 2 (a Gaussian's mean and variance) or the
        number of quantile levels, as ``outputs`` names them. Classification: probabilities
        over ``classes`` (binary holds two columns, negative then positive).
    members : sequence of str
        One unique name per member.
    task : {"regression", "binary", "multiclass"}
    classes : array-like of shape (n_outputs,), optional
        Class labels for classification; default ``0..n_outputs-1``.
    costs : array-like of shape (n_members,), optional
        Cost of running each member (seconds or FLOPs per sample), for cascades and reports.
    outputs : sequence of str, optional
        The name of each output. Regression: ``("value",)`` (the default), ``("mean", "var")``
        or quantile names ``("q0.1", ..., "q0.9")`` with increasing levels in (0, 1).
        Classification: the classes as text (the default); ``classes`` defaults to them.
    source : str
        Where the values came from, used in error messages.

    Examples
    --------
    >>> P = Predictions(np.zeros((4, 2, 1)), ["a", "b"], "regression")
    >>> P.shape
    (4, 2, 1)
    >>> G = Predictions(np.ones((4, 2, 2)), ["a", "b"], "regression", outputs=("mean", "var"))
    >>> G.output_kind, G.outputs
    ('gaussian', ('mean', 'var'))
    >>> Q = Predictions(np.zeros((4, 1, 3)), ["a"], "regression",
    ...                 outputs=quantile_outputs([0.1, 0.5, 0.9]))
    >>> Q.quantiles.tolist()
    [0.1, 0.5, 0.9]
    """

    values: np.ndarray
    members: tuple[str, ...]
    task: str
    classes: np.ndarray | None = None
    costs: np.ndarray | None = None
    outputs: tuple[str, ...] | None = None
    source: str = field(default="predictions", repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        check_task(self.task)
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 2:
            values = values[:, :, None]
        if values.ndim != 3:
            raise ValueError(
                f"{self.source}: values must have shape (n_samples, n_members, n_outputs), "
                f"however: values.shape={values.shape}"
            )
        n, m, k = values.shape
        if n == 0 or m == 0:
            raise ValueError(f"{self.source}: no rows or no members, values.shape={values.shape}")
        members = tuple(str(name) for name in self.members)
        if len(members) != m:
            raise ValueError(
                f"{self.source}: {len(members)} member names for {m} members in values"
            )
        if len(set(members)) != m:
            dup = sorted({x for x in members if members.count(x) > 1})
            raise ValueError(f"{self.source}: duplicate member names {dup}")
        set_(self, "values", values)
        set_(self, "members", members)
        set_(self, "classes", self._check_classes(k))
        set_(self, "outputs", self._check_outputs(k))
        if self.costs is not None:
            costs = np.asarray(self.costs, dtype=float)
            if costs.shape != (m,) or not np.all(np.isfinite(costs)) or np.any(costs < 0):
                raise ValueError(
                    f"{self.source}: costs must be {m} finite non-negative numbers, "
                    f"however: costs={self.costs!r}"
                )
            set_(self, "costs", costs)
        self._check_values()

    def _check_classes(self, k: int) -> np.ndarray | None:
        if not is_classification(self.task):
            return None  # regression has no classes; a given value is dropped
        if self.task == "binary" and k != 2:
            raise ValueError(
                f"{self.source}: binary predictions need 2 outputs (P(negative), P(positive)), "
                f"however: n_outputs={k}"
            )
        if self.classes is not None:
            classes = np.asarray(self.classes)
        elif self.outputs is not None:
            classes = np.asarray([str(c) for c in self.outputs])
        else:
            classes = np.arange(k)
        if classes.shape != (k,):
            raise ValueError(f"{self.source}: {len(classes)} classes for n_outputs={k}")
        if len(np.unique(classes.astype(str))) != k:
            raise ValueError(f"{self.source}: duplicate classes in {classes.tolist()}")
        return classes

    def _check_outputs(self, k: int) -> tuple[str, ...]:
        if is_classification(self.task):
            names = tuple(str(c) for c in self.classes.tolist())
            if self.outputs is not None and tuple(str(c) for c in self.outputs) != names:
                raise ValueError(
                    f"{self.source}: classification outputs are the classes {list(names)}, "
                    f"however: outputs={list(self.outputs)!r}"
                )
            return names
        if self.outputs is None:
            if k != 1:
                raise ValueError(
                    f"{self.source}: regression predictions need n_outputs=1, or outputs "
                    "naming them: ('mean', 'var') for a Gaussian, ('q0.1', ..., 'q0.9') for "
                    f"quantiles; however: n_outputs={k}, outputs=None"
                )
            return VALUE_OUTPUTS
        if isinstance(self.outputs, str):
            raise TypeError(
                f"{self.source}: outputs must be a sequence of names, however: "
                f"outputs={self.outputs!r}"
            )
        outputs = tuple(str(name) for name in self.outputs)
        if len(outputs) != k:
            raise ValueError(
                f"{self.source}: {len(outputs)} output names for n_outputs={k}, "
                f"however: outputs={list(outputs)!r}"
            )
        if outputs in (VALUE_OUTPUTS, GAUSSIAN_OUTPUTS):
            return outputs
        levels = quantile_levels(outputs)
        if levels is None:
            raise ValueError(
                f"{self.source}: regression outputs must be ('value',), ('mean', 'var') or "
                f"quantile names such as ('q0.1', 'q0.9'), however: outputs={list(outputs)!r}"
            )
        if not (np.all((levels > 0) & (levels < 1)) and np.all(np.diff(levels) > 0)):
            raise ValueError(
                f"{self.source}: quantile levels must be increasing and inside (0, 1), "
                f"however: outputs={list(outputs)!r}"
            )
        return outputs

    def _check_values(self) -> None:
        v = self.values
        bad = ~np.isfinite(v)
        if bad.any():
            row, member, _ = np.argwhere(bad)[0]
            raise ValueError(
                f"{self.source}: member {self.members[member]!r} has NaN or inf at row {row}; "
                "expected finite predictions"
            )
        if not is_classification(self.task):
            if self.outputs == GAUSSIAN_OUTPUTS and np.any(v[:, :, 1] < 0):
                row, member = np.argwhere(v[:, :, 1] < 0)[0]
                raise ValueError(
                    f"{self.source}: member {self.members[member]!r} has variance "
                    f"{v[row, member, 1]:g} at row {row}; expected var >= 0"
                )
            return
        outside = (v < 0) | (v > 1)
        if outside.any():
            row, member, out = np.argwhere(outside)[0]
            raise ValueError(
                f"{self.source}: member {self.members[member]!r} has probability "
                f"{v[row, member, out]:g} for class {self.classes[out]!r} at row {row}; "
                "expected values in [0, 1]"
            )
        off = np.abs(v.sum(axis=2) - 1.0) > SIMPLEX_ATOL
        if off.any():
            row, member = np.argwhere(off)[0]
            raise ValueError(
                f"{self.source}: member {self.members[member]!r} has probabilities summing to "
                f"{v[row, member].sum():.6g} at row {row}; expected 1 (within {SIMPLEX_ATOL})"
            )

    # ------------------------------------------------------------ views
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape  # type: ignore[return-value]

    @property
    def n_samples(self) -> int:
        return self.values.shape[0]

    @property
    def n_members(self) -> int:
        return self.values.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.values.shape[2]

    @property
    def output_kind(self) -> str:
        """``"value"``, ``"gaussian"`` or ``"quantiles"`` (regression), ``"probabilities"``."""
        if is_classification(self.task):
            return "probabilities"
        if self.outputs == VALUE_OUTPUTS:
            return "value"
        return "gaussian" if self.outputs == GAUSSIAN_OUTPUTS else "quantiles"

    @property
    def quantiles(self) -> np.ndarray | None:
        """The quantile levels of quantile predictions, else None."""
        return quantile_levels(self.outputs) if self.output_kind == "quantiles" else None

    def member(self, name: str) -> np.ndarray:
        """One member's predictions ``(n_samples, n_outputs)``."""
        return self.values[:, self._index(name)]

    def _index(self, name: str) -> int:
        try:
            return self.members.index(name)
        except ValueError:
            raise ValueError(
                f"{self.source}: unknown member {name!r}; members are {list(self.members)}"
            ) from None

    def select(self, members: Sequence[str]) -> Predictions:
        """The same rows restricted to (and reordered as) ``members``."""
        idx = [self._index(m) for m in members]
        costs = None if self.costs is None else self.costs[idx]
        return self._replace(values=self.values[:, idx], members=tuple(members), costs=costs)

    def take(self, rows) -> Predictions:
        """A subset of rows (an index array or a boolean mask).

        The rows of checked predictions need no second check: nested cross-validation takes
        subsets thousands of times, and checking each cost more than fitting some combiners.
        """
        values = self.values[rows]
        if values.ndim != 3 or len(values) == 0:
            return self._replace(values=values)  # let the full check name the problem
        subset = object.__new__(Predictions)
        for name in ("members", "task", "classes", "costs", "outputs", "source"):
            object.__setattr__(subset, name, getattr(self, name))
        object.__setattr__(subset, "values", values)
        return subset

    def _replace(self, **changes) -> Predictions:
        fields = dict(
            values=self.values,
            members=self.members,
            task=self.task,
            classes=self.classes,
            costs=self.costs,
            outputs=self.outputs,
            source=self.source,
        )
        if "classes" in changes and "outputs" not in changes and is_classification(self.task):
            fields["outputs"] = None  # named by the new classes
        fields.update(changes)
        return Predictions(**fields)


def as_predictions(P, name: str = "P") -> Predictions:
    """Accept a :class:`Predictions` or a plain array and return a :class:`Predictions`.

    A plain array ``(n_samples, n_members, n_outputs)`` is read as regression when
    ``n_outputs == 1`` and as classification (codes ``0..n_outputs-1``) otherwise.
    """
    if isinstance(P, Predictions):
        return P
    values = np.asarray(P, dtype=np.float64)
    if values.ndim != 3:
        raise ValueError(
            f"{name} must be Predictions or an array (n_samples, n_members, n_outputs), "
            f"however: {name}.shape={values.shape}"
        )
    k = values.shape[2]
    task = "regression" if k == 1 else ("binary" if k == 2 else "multiclass")
    members = [f"m{j}" for j in range(values.shape[1])]
    return Predictions(values, members, task, source=name)
