"""The features a combiner reads beside the predictions, encoded as numbers it can compare.

Combiners that look at where a sample lies (dynamic selection, routing, fusion) take the
original features ``X``: a DataFrame or a 2-D array. They measure distances, so every column
is put on one scale: numbers are centred on their median and divided by their standard
deviation (missing cells become the median), and text or categorical columns become one
0/1 column per category seen at fit time (the most frequent ones, up to
``MAX_CATEGORIES``; others and missing cells are all zeros).

The encoding is a plain dict of lists and arrays, so it is saved with the combiner's state
(:mod:`ensemblex.combiners.state`) like any other fitted attribute. Written here rather than
with a scikit-learn ``ColumnTransformer`` because that would need a pickle or skops file
beside the JSON state, and this is all the encoding a distance needs.

Examples
--------
>>> import pandas as pd
>>> X = pd.DataFrame({"age": [20.0, 30.0, None], "city": ["a", "b", "a"]})
>>> encoding = fit_feature_encoding(X)
>>> encoding["columns"], encoding["categories"]
(['age', 'city'], {'city': ['a', 'b']})
>>> encode_features(encoding, X).round(3).tolist()
[[-1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np

MAX_CATEGORIES = 32


def n_rows(X) -> int:
    """Rows of a DataFrame or array."""
    return len(X)


def take_rows(X, rows):
    """Rows ``rows`` (indices or a mask) of a DataFrame or array; None stays None."""
    if X is None:
        return None
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    return np.asarray(X)[rows]


def _frame(X, source: str):
    import pandas as pd

    if hasattr(X, "columns"):
        frame = X.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return frame
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(
            f"{source} must be a DataFrame or a 2-D array, however: shape={array.shape}"
        )
    return pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])


def fit_feature_encoding(X, source: str = "X") -> dict:
    """Learn the encoding of ``X`` (DataFrame or 2-D array): a JSON-able dict with arrays.

    Returns
    -------
    dict
        ``columns`` (names in order), ``numeric`` (names), ``center`` and ``scale`` (one per
        numeric column), ``categories`` (name -> categories kept).
    """
    from ensemblex.preprocessing import is_numeric

    frame = _frame(X, source)
    if frame.shape[1] == 0:
        raise ValueError(f"{source} must have at least one column")
    numeric = [c for c in frame.columns if is_numeric(frame[c])]
    values = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    values[~np.isfinite(values)] = np.nan
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        center = np.nan_to_num(np.nanmedian(values, axis=0)) if numeric else np.zeros(0)
        scale = np.nan_to_num(np.nanstd(values, axis=0)) if numeric else np.zeros(0)
    scale[scale <= 1e-12] = 1.0
    categories = {}
    for c in frame.columns:
        if c not in numeric:
            counts = frame[c].dropna().astype(str).value_counts(sort=True)
            categories[c] = sorted(counts.index[:MAX_CATEGORIES].tolist())
    return {
        "columns": list(frame.columns),
        "numeric": numeric,
        "center": center,
        "scale": scale,
        "categories": categories,
    }


def encoded_width(encoding: dict) -> int:
    """Columns :func:`encode_features` makes under ``encoding``."""
    return len(encoding["numeric"]) + sum(len(kept) for kept in encoding["categories"].values())


def encode_features(encoding: dict, X, source: str = "X") -> np.ndarray:
    """``X`` as numbers under a fitted ``encoding``; float64 array (n_rows, n_encoded).

    Raises ValueError naming the first missing column (DataFrames) or the expected width
    (arrays).
    """
    frame = _frame(X, source)
    columns = encoding["columns"]
    if not hasattr(X, "columns") and frame.shape[1] != len(columns):
        raise ValueError(
            f"{source} must have {len(columns)} columns as at fit time, however: "
            f"{source}.shape={np.shape(X)}"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source} lacks column {missing[0]!r} that the combiner was fitted on")
    numeric = list(encoding["numeric"])
    parts = []
    if numeric:
        values = frame[numeric].apply(_to_number).to_numpy(dtype=np.float64, na_value=np.nan)
        center = np.asarray(encoding["center"], dtype=np.float64)
        values = np.where(np.isfinite(values), values, center)
        parts.append((values - center) / np.asarray(encoding["scale"], dtype=np.float64))
    for name, kept in encoding["categories"].items():
        codes = _category_codes(frame[name], kept)
        onehot = np.zeros((len(frame), len(kept)))
        rows = np.flatnonzero(codes >= 0)
        onehot[rows, codes[rows]] = 1.0
        parts.append(onehot)
    return np.hstack(parts) if parts else np.zeros((len(frame), 0))


def _category_codes(column, kept: list) -> np.ndarray:
    """Position of each cell's text among ``kept``; -1 for a missing or unseen category."""
    import pandas as pd

    text = column.astype(str).where(column.notna())
    text = text.where(text.isin(kept))  # unseen -> missing (pandas deprecates passing them)
    return np.asarray(pd.Categorical(text, categories=list(kept)).codes, dtype=np.intp)


def _to_number(column):
    import pandas as pd

    return pd.to_numeric(column, errors="coerce")


class _quiet_nan_warnings:
    """All-NaN columns give NaN medians (then 0) without a RuntimeWarning."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)
