"""Tables on disk: raw data tables and wide prediction tables (CSV or Parquet).

:func:`read_data` reads a raw data table (the rows ``run`` trains on and ``predict`` scores);
:func:`read_table` reads a wide prediction table into :class:`Predictions`, :func:`to_frame`
and :func:`write_frame` write one. Both readers share one file reader, so their errors agree.

Wide layout, one row per sample:

- regression (a value) and binary: one column per member (binary: probability of the
  positive class);
- regression, a Gaussian per member: ``<member>:mean`` and ``<member>:var``;
- regression, quantiles per member: ``<member>:q0.1``, ``<member>:q0.9``, ...;
- multiclass: one column per member per class, named ``<member>:<class>``;
- optionally an id column and, in out-of-fold tables, the target column.

The task of a table is told by :func:`ensemblex.tasks.detect_task` (the package's one rule)
from the target and, for one column per member, the member columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.files import atomic_path
from ensemblex.predictions import GAUSSIAN_OUTPUTS, VALUE_OUTPUTS, Predictions, quantile_levels
from ensemblex.tasks import detect_task

_PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Table:
    """A prediction table read from a file or a DataFrame.

    Attributes
    ----------
    predictions : Predictions
    y : ndarray or None
        The target column as read (labels for classification), when the table has it.
    ids : ndarray or None
        The id column, when asked for.
    """

    predictions: Predictions
    y: np.ndarray | None = None
    ids: np.ndarray | None = None


# ---------------------------------------------------------------- reading
def read_data(path) -> pd.DataFrame:
    """Read a raw data table: CSV (optionally gzip, ``?`` read as missing) or Parquet.

    Every problem with the file (missing, empty, no rows, duplicate column names,
    unreadable) is a ``ValueError`` that names the file.

    Parameters
    ----------
    path : str or Path
        ``.parquet``/``.pq`` files are read as Parquet, anything else as CSV (``.gz``: gzip).

    Returns
    -------
    DataFrame
        At least one row.
    """
    return _read_frame(Path(path), na_values=["?"])


def read_table(path, **kwargs) -> Table:
    """Read a wide prediction table from CSV (optionally gzip) or Parquet.

    Keyword arguments are those of :func:`from_frame`. Every problem with the file is a
    ``ValueError`` that names the file, and the column where there is one.
    """
    path = Path(path)
    return from_frame(_read_frame(path), source=str(path), **kwargs)


def _read_frame(path: Path, na_values=None) -> pd.DataFrame:
    """The one file reader: header checked for duplicate names first, then the rows."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    parquet = path.suffix.lower() in _PARQUET_SUFFIXES
    try:
        if parquet:
            import pyarrow.parquet as pq

            names = list(pq.read_schema(path).names)
        else:
            names = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
            names = names.iloc[0].tolist()
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; expected a table with a header row") from None
    except Exception as exc:  # pyarrow, parser and decoding errors all mean "unreadable"
        raise ValueError(f"{path}: cannot read as a CSV or Parquet table ({exc})") from None
    _check_unique(names, str(path))
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path, na_values=na_values)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a CSV or Parquet table ({exc})") from None
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has no rows")
    return frame


def _check_unique(names: list, source: str) -> None:
    seen, dups = set(), []
    for name in names:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    if dups:
        raise ValueError(f"{source}: duplicate column names {dups}; each column must be unique")


def from_frame(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    id_col: str | None = None,
    task: str = "auto",
    classes=None,
    positive=None,
    members: list[str] | None = None,
    outputs=None,
    source: str = "DataFrame",
) -> Table:
    """Build a :class:`Table` from a wide DataFrame.

    Parameters
    ----------
    frame : DataFrame
        The wide table.
    target : str, optional
        Name of the target column. Optional in a test table (used when present).
    id_col : str, optional
        Name of an id column to carry through.
    task : {"auto", "regression", "binary", "multiclass"}
        ``"auto"``: ``<member>:mean``/``<member>:var`` or ``<member>:q<level>`` names are
        regression (unless the target's labels are those names), other ``<member>:<class>``
        names multiclass; one column per member follows
        :func:`ensemblex.tasks.detect_task` on the target and the member columns.
    classes : array-like, optional
        The classes, e.g. those of the matching out-of-fold table.
    positive : optional
        The positive class of a binary task; default the larger label in sorted order.
    members : list of str, optional
        The members expected, in order (e.g. those of the out-of-fold table).
    outputs : sequence of str, optional
        The regression outputs expected (e.g. ``("mean", "var")`` of the out-of-fold table);
        default: read from the column names.
    source : str
        Name used in error messages.

    Examples
    --------
    >>> frame = pd.DataFrame({"y": [1.5, 2.0], "a:mean": [1.4, 2.2], "a:var": [0.1, 0.2]})
    >>> P = from_frame(frame, target="y").predictions
    >>> P.task, P.outputs, P.shape
    ('regression', ('mean', 'var'), (2, 1, 2))
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    _check_unique(list(frame.columns), source)
    if len(frame) == 0:
        raise ValueError(f"{source}: the table has no rows")
    for name, col in (("target", target), ("id", id_col)):
        if col is not None and col not in frame.columns and not (name == "target" and members):
            raise ValueError(
                f"{source}: unknown {name} column {col!r}; columns are {list(frame.columns)}"
            )
    has_target = target is not None and target in frame.columns
    y = frame[target].to_numpy() if has_target else None
    ids = frame[id_col].to_numpy() if id_col is not None else None
    columns = [c for c in frame.columns if c not in (target, id_col)]
    if not columns:
        raise ValueError(f"{source}: no member columns besides the target and id columns")
    _check_numeric(frame, columns, source)
    task = _table_task(frame, columns, y, task, target, source)
    if y is not None:
        y = _check_target(y, task, target, source)
    if task == "multiclass":
        P = _multiclass(frame, columns, y, classes, members, source)
    elif task == "regression" and _has_blocks(columns):
        P = _regression_outputs(frame, columns, members, outputs, source)
    else:
        if members is not None:
            columns = _align_members(columns, members, source)
        values = frame[columns].to_numpy(dtype=np.float64)
        _check_column_values(values, columns, task, source)
        if task == "binary":
            classes = _binary_classes(y, classes, positive, target, source)
            values = np.stack([1.0 - values, values], axis=2)
        P = Predictions(values, columns, task, classes=classes, source=source)
    return Table(P, y, ids)


def _check_numeric(frame: pd.DataFrame, columns: list, source: str) -> None:
    for col in columns:
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            raise ValueError(
                f"{source}: column {col!r} is not numeric (dtype {frame[col].dtype}); "
                "expected member predictions as numbers"
            )


def _has_blocks(columns: list) -> bool:
    return any(":" in str(c) for c in columns)


def _table_task(frame, columns, y, task, target, source) -> str:
    """The task by the package's one rule; the column layout decides where it can."""
    series = None if y is None else pd.Series(y, name=target)
    if task != "auto":
        if series is not None:
            detect_task(series, task, source=source)  # an explicit task must fit the target
        return task
    if _has_blocks(columns):
        task = "regression" if _is_regression_layout(columns, y) else "multiclass"
        return task if series is None else detect_task(series, layout=task, source=source)
    if series is None:
        raise ValueError(
            f"{source}: cannot tell the task without the target column; pass the task "
            "(regression, binary or multiclass)"
        )
    evidence = frame[columns].to_numpy(dtype=np.float64)
    task = detect_task(series, "auto", predictions=evidence, source=source)
    if task == "multiclass":
        raise ValueError(
            f"{source}: target column {target!r} has {series.nunique()} classes; multiclass "
            "member columns must be named '<member>:<class>'"
        )
    return task


def _is_regression_layout(columns: list, y) -> bool:
    """Suffixes among ``mean``/``var``, or ``q<level>`` only, and not the target's labels."""
    suffixes = {str(c).rpartition(":")[2] for c in columns if ":" in str(c)}
    if not suffixes <= set(GAUSSIAN_OUTPUTS) and quantile_levels(sorted(suffixes)) is None:
        return False
    return y is None or not {str(v) for v in pd.unique(y)} <= suffixes


def _check_target(y: np.ndarray, task: str, target: str, source: str) -> np.ndarray:
    missing = pd.isna(y)
    if missing.any():
        raise ValueError(
            f"{source}: target column {target!r} is missing at row {int(np.argmax(missing))}"
        )
    if task == "regression":
        y = y.astype(np.float64)  # detect_task has checked that it holds numbers
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{source}: target column {target!r} holds inf")
    return y


def _check_column_values(values: np.ndarray, columns: list, task: str, source: str) -> None:
    """Name the first column with NaN/inf or, for probabilities, a value outside [0, 1]."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{source}: column {columns[col]!r} has NaN or inf at row {row}; "
            "expected finite predictions"
        )
    if task != "regression":
        outside = (values < 0) | (values > 1)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(
                f"{source}: column {columns[col]!r} has {values[row, col]:g} at row {row}; "
                "expected probabilities in [0, 1]"
            )


def _binary_classes(y, classes, positive, target, source) -> np.ndarray:
    if classes is not None:
        classes = np.asarray(classes)
    elif y is not None:
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(
                f"{source}: target column {target!r} has {len(classes)} classes "
                f"{classes.tolist()[:10]}; a binary task needs exactly 2"
            )
    else:
        classes = np.array([0, 1])
    if positive is not None:
        match = [i for i, c in enumerate(classes.tolist()) if str(c) == str(positive)]
        if not match:
            raise ValueError(
                f"{source}: positive class {positive!r} is not among the classes {classes.tolist()}"
            )
        classes = classes[[1 - match[0], match[0]]]
    if y is not None:
        known = {str(c) for c in classes.tolist()}
        unknown = sorted({str(v) for v in y.tolist()} - known)
        if unknown:
            raise ValueError(
                f"{source}: target column {target!r} holds {unknown}, not among the classes "
                f"{classes.tolist()}"
            )
    return classes


def _blocks(columns: list, what: str, source: str) -> dict[str, dict[str, str]]:
    """``{member: {suffix: column}}`` of ``<member>:<suffix>`` names."""
    blocks: dict[str, dict[str, str]] = {}
    for col in columns:
        member, sep, label = str(col).rpartition(":")
        if not sep or not member or not label:
            raise ValueError(
                f"{source}: column {col!r} is not named '<member>:<{what}>' as the other "
                "member columns are"
            )
        blocks.setdefault(member, {})[label] = col
    return blocks


def _regression_outputs(frame, columns, members, outputs, source) -> Predictions:
    """Members that predict a Gaussian (``:mean``, ``:var``) or quantiles (``:q<level>``)."""
    blocks = _blocks(columns, "output", source)
    names = list(blocks)
    if members is not None:
        names = _align_members(names, members, source)
    if outputs is None:
        found = list(blocks[names[0]])
        levels = quantile_levels(found)
        if set(found) <= set(GAUSSIAN_OUTPUTS):  # a missing one is named below
            outputs = GAUSSIAN_OUTPUTS
        elif levels is not None:
            outputs = [found[i] for i in np.argsort(levels, kind="stable")]
        else:
            raise ValueError(
                f"{source}: member {names[0]!r} has outputs {found}; regression member "
                "columns are '<member>:mean' and '<member>:var', or '<member>:q<level>'"
            )
    outputs = [str(o) for o in outputs]
    _check_same_blocks(blocks, names, outputs, "output", source)
    ordered = [blocks[name][o] for name in names for o in outputs]
    values = frame[ordered].to_numpy(dtype=np.float64)
    _check_column_values(values, ordered, "regression", source)
    values = values.reshape(len(frame), len(names), len(outputs))
    return Predictions(values, names, "regression", outputs=outputs, source=source)


def _check_same_blocks(blocks: dict, names: list, expected: list, what: str, source) -> None:
    """Every member must have one column per expected output (or class), and no other."""
    plural = "classes" if what == "class" else f"{what}s"
    for name in names:
        missing = [o for o in expected if o not in blocks[name]]
        extra = [o for o in blocks[name] if o not in expected]
        if missing or extra:
            detail = f"no column {name}:{missing[0]}" if missing else f"extra {what} {extra[0]!r}"
            raise ValueError(
                f"{source}: member {name!r} does not predict the same {plural} as the others "
                f"({detail}); expected {plural} {expected}"
            )


def _multiclass(frame, columns, y, classes, members, source) -> Predictions:
    blocks = _blocks(columns, "class", source)
    names = list(blocks)
    if members is not None:
        names = _align_members(names, members, source)
    labels = list(blocks[names[0]]) if classes is None else [str(c) for c in classes]
    _check_same_blocks(blocks, names, labels, "class", source)
    if y is not None:
        unnamed = sorted({str(v) for v in y.tolist()} - set(labels))
        if unnamed:
            raise ValueError(
                f"{source}: target classes {unnamed} are named by no member column; "
                f"member columns name the classes {labels}"
            )
    ordered = [blocks[name][c] for name in names for c in labels]
    values = frame[ordered].to_numpy(dtype=np.float64)
    _check_column_values(values, ordered, "multiclass", source)
    values = values.reshape(len(frame), len(names), len(labels))
    classes = np.asarray(classes) if classes is not None else _restore_label_type(labels, y)
    return Predictions(values, names, "multiclass", classes=classes, source=source)


def _restore_label_type(labels: list[str], y) -> np.ndarray:
    """Classes from column names, as the target's own labels where they match."""
    if y is None:
        return np.asarray(labels)
    by_str = {str(v): v for v in np.unique(y).tolist()}
    if all(label in by_str for label in labels):
        return np.asarray([by_str[label] for label in labels])
    return np.asarray(labels)


def _align_members(found: list[str], expected: list[str], source: str) -> list[str]:
    missing = [m for m in expected if m not in found]
    if missing:
        raise ValueError(
            f"{source}: member {missing[0]!r} of the out-of-fold table is missing here"
        )
    extra = [m for m in found if m not in expected]
    if extra:
        raise ValueError(f"{source}: member {extra[0]!r} is not in the out-of-fold table")
    return list(expected)


# ---------------------------------------------------------------- writing
def to_frame(P: Predictions) -> pd.DataFrame:
    """The wide layout of ``P`` as a DataFrame (binary: positive-class column only).

    Examples
    --------
    >>> P = Predictions(np.ones((2, 1, 2)), ["a"], "regression", outputs=("mean", "var"))
    >>> list(to_frame(P).columns)
    ['a:mean', 'a:var']
    """
    if P.task == "regression" and P.outputs == VALUE_OUTPUTS:
        data = {m: P.values[:, j, 0] for j, m in enumerate(P.members)}
    elif P.task == "regression":
        data = {
            f"{m}:{o}": P.values[:, j, i]
            for j, m in enumerate(P.members)
            for i, o in enumerate(P.outputs)
        }
    elif P.task == "binary":
        data = {m: P.values[:, j, 1] for j, m in enumerate(P.members)}
    else:
        data = {
            f"{m}:{c}": P.values[:, j, i]
            for j, m in enumerate(P.members)
            for i, c in enumerate(P.classes.tolist())
        }
    return pd.DataFrame(data)


def write_frame(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix) atomically: a temp file, then a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in _PARQUET_SUFFIXES:
            frame.to_parquet(tmp, index=False)
        else:
            gzip = path.name.lower().endswith(".gz")
            frame.to_csv(tmp, index=False, compression="gzip" if gzip else None)
    return path
