"""The predictions array ``(n_samples, n_members, n_outputs)`` and its validated container."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ensemblex.tasks import check_task, is_classification

# Tolerance on a multiclass row of probabilities summing to one.
SIMPLEX_ATOL = 1e-3


@dataclass(frozen=True, eq=False)
class Predictions:
    """Members' predictions for the same rows, validated once at construction.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_members, n_outputs)
        Regression: ``n_outputs = 1``. Classification: probabilities over ``classes``
        (binary holds two columns, negative then positive).
    members : sequence of str
        One unique name per member.
    task : {"regression", "binary", "multiclass"}
    classes : array-like of shape (n_outputs,), optional
        Class labels for classification; default ``0..n_outputs-1``.
    costs : array-like of shape (n_members,), optional
        Cost of running each member (seconds or FLOPs per sample), for cascades and reports.
    source : str
        Where the values came from, used in error messages.

    Examples
    --------
    >>> P = Predictions(np.zeros((4, 2, 1)), ["a", "b"], "regression")
    >>> P.shape
    (4, 2, 1)
    """

    values: np.ndarray
    members: tuple[str, ...]
    task: str
    classes: np.ndarray | None = None
    costs: np.ndarray | None = None
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
            if k != 1:
                raise ValueError(
                    f"{self.source}: regression predictions need n_outputs=1, "
                    f"however: n_outputs={k}"
                )
            return None
        if self.task == "binary" and k != 2:
            raise ValueError(
                f"{self.source}: binary predictions need 2 outputs (P(negative), P(positive)), "
                f"however: n_outputs={k}"
            )
        classes = np.arange(k) if self.classes is None else np.asarray(self.classes)
        if classes.shape != (k,):
            raise ValueError(f"{self.source}: {len(classes)} classes for n_outputs={k}")
        if len(np.unique(classes.astype(str))) != k:
            raise ValueError(f"{self.source}: duplicate classes in {classes.tolist()}")
        return classes

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
        """A subset of rows (an index array or a boolean mask)."""
        return self._replace(values=self.values[rows])

    def _replace(self, **changes) -> Predictions:
        fields = dict(
            values=self.values,
            members=self.members,
            task=self.task,
            classes=self.classes,
            costs=self.costs,
            source=self.source,
        )
        fields.update(changes)
        return Predictions(**fields)

    # ------------------------------------------------------------ tables
    @classmethod
    def from_frame(cls, frame, **kwargs):
        """Read a wide table held in a DataFrame; see :func:`ensemblex.tables.from_frame`."""
        from ensemblex.tables import from_frame

        return from_frame(frame, **kwargs)

    @classmethod
    def read(cls, path, **kwargs):
        """Read a wide CSV or Parquet table; see :func:`ensemblex.tables.read_table`."""
        from ensemblex.tables import read_table

        return read_table(path, **kwargs)

    def to_frame(self):
        """The wide-table layout as a pandas DataFrame; see :func:`ensemblex.tables.to_frame`."""
        from ensemblex.tables import to_frame

        return to_frame(self)


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
