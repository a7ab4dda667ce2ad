"""Multi-view members: a member that sees only one view (a named set of columns) of the table.

One zoo fitted per view, then one combiner across all of them (MADE-for-ASD's recipe: one
model per brain atlas, then a weighted ensemble across atlases). A view member is named
``view/member`` and wraps any other member: it hands the inner member the view's columns
and a schema cut down to them, so the inner member's own encoding, saving and loading are
unchanged. Saved, its folder holds the inner member's folder (``inner/``) with its own
``member.json``; both are verified on load.

Examples
--------
>>> views = check_views({"demographics": ["Age", "Gender"], "account": ["Balance"]},
...                     ["Age", "Gender", "Balance", "Tenure"])
>>> sorted(views)
['account', 'demographics']
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ensemblex.members.base import FoldContext, Member, load_member
from ensemblex.preprocessing import Schema

INNER = "inner"


def check_views(views, columns: list[str], source: str = "views") -> dict[str, list[str]]:
    """``views`` (``{name: [columns]}``) checked against the table's feature ``columns``.

    Raises ValueError naming the view and the column: an unknown column, an empty view, a
    name that cannot be a folder name, or fewer than one view.
    """
    if not isinstance(views, dict) or not views:
        raise ValueError(f"{source} must map view names to lists of columns, however: {views!r}")
    known = set(columns)
    out = {}
    for name, cols in views.items():
        _check_view_name(name, source)
        if (
            not isinstance(cols, list | tuple)
            or not cols
            or not all(isinstance(c, str) for c in cols)
        ):
            raise ValueError(
                f"{source}: view {name!r} must list at least one column name, however: {cols!r}"
            )
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise ValueError(
                f"{source}: view {name!r} names column {unknown[0]!r}, which is not a feature "
                f"column of the table ({sorted(known)})"
            )
        out[name] = list(dict.fromkeys(cols))
    return out


def _check_view_name(name, source: str = "views") -> None:
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or name != name.strip()
    ):
        raise ValueError(
            f"{source}: a view name must be a non-empty string without '/' or a leading '.', "
            f"however: {name!r}"
        )


def view_members(views: dict[str, list[str]], members: list[Member]) -> list[Member]:
    """Every member once per view: ``len(views) * len(members)`` members named
    ``view/member``."""
    return [ViewMember(view, cols, m) for view, cols in views.items() for m in members]


def view_schema(schema: Schema, columns: list[str]) -> Schema:
    """``schema`` cut down to ``columns`` (their kinds, ranges and categories kept)."""
    keep = set(columns)
    return replace(
        schema,
        numeric=[c for c in schema.numeric if c in keep],
        categorical=[c for c in schema.categorical if c in keep],
        dropped=[],
        dtypes={k: v for k, v in schema.dtypes.items() if k in keep},
        ranges={k: v for k, v in schema.ranges.items() if k in keep},
        categories={k: v for k, v in schema.categories.items() if k in keep},
    )


def view_of(member_name: str) -> str | None:
    """The view of a column name ``view/member`` (None for a member without one)."""
    view, sep, _ = member_name.partition("/")
    return view if sep else None


def view_weights(members, weights) -> dict[str, float]:
    """Combiner weights summed per view (members without a view are left out)."""
    totals: dict[str, float] = {}
    for name, w in zip(members, np.asarray(weights, dtype=float)):
        view = view_of(name)
        if view is not None:
            totals[view] = totals.get(view, 0.0) + float(w)
    return totals


class ViewMember(Member):
    """A member that sees only the columns of one view.

    Parameters
    ----------
    view : str
        The view's name (the prefix of this member's name).
    columns : list of str
        The view's columns.
    inner : Member
        The member fitted on them (any family).
    """

    family = "view"

    def __init__(self, view: str, columns: list[str], inner: Member):
        _check_view_name(view)
        super().__init__(inner.name)
        self.name = f"{view}/{inner.name}"
        self.view = view
        self.columns = list(columns)
        self.inner = inner

    def fit(self, X: pd.DataFrame, y: np.ndarray, context: FoldContext) -> ViewMember:
        schema = view_schema(context.schema, self.columns)
        fitted = self.inner.fit(X[self.columns], y, replace(context, schema=schema))
        out = ViewMember(self.view, self.columns, fitted)
        out.task = context.task
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.inner.predict(X[self.columns])

    def predict_shared(self, X: pd.DataFrame, encoded: dict) -> np.ndarray:
        """The inner member's shared prediction: its encodings are keyed by the fitted
        preprocessor, which differs between views, so views never share one by mistake."""
        rows = X[self.columns]
        if hasattr(self.inner, "predict_shared"):
            return self.inner.predict_shared(rows, encoded)
        return self.inner.predict(rows)

    def n_columns(self) -> int:
        return self.inner.n_columns()

    def outputs(self):
        return self.inner.outputs()

    def column_names(self) -> list[str]:
        return [f"{self.view}/{c}" for c in self.inner.column_names()]

    def fingerprint(self) -> list:
        return [self.name, self.family, self.columns, self.inner.fingerprint()]

    def save_files(self, folder: Path) -> dict[str, Any]:
        self.inner.save(Path(folder) / INNER)
        return {"view": self.view, "columns": self.columns}

    @classmethod
    def load_files(cls, folder: Path, name: str, task: str, settings: dict) -> ViewMember:
        view, columns = settings.get("view"), settings.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"{folder}: a view member must list its columns, however: {columns!r}")
        inner = load_member(Path(folder) / INNER)
        member = cls(view, columns, inner)
        if member.name != name:
            raise ValueError(f"{folder}: member {name!r} holds view {view!r} of {inner.name!r}")
        member.task = task
        return member

    def __repr__(self) -> str:
        return f"ViewMember(view={self.view!r}, columns={self.columns!r}, inner={self.inner!r})"
