"""A fitted member preprocessor as a few numpy operations, for rows served one at a time.

scikit-learn's ``ColumnTransformer`` validates, indexes and wraps at every call: encoding one
churn row takes 2.5-5 ms, more than most members take to predict it (0.02-0.7 ms). The
preprocessors :func:`ensemblex.preprocessing.make_preprocessor` builds are simple (numeric
columns passed through, median-imputed or also standardised; categorical ones as ordinal
codes or one-hot with infrequent categories grouped), so the fitted one is read into arrays
and lookup tables once. It is used only after it reproduced scikit-learn's output exactly on
probe rows (every category, missing values, unknown categories); anything else (another
transformer, a category that is not text) falls back to scikit-learn. No library compiles
a ``ColumnTransformer``, hence by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING = "(missing)"  # the one-hot encoding's fill value (make_preprocessor)


class CompiledEncoder:
    """The transform of a fitted ``make_preprocessor`` ``ColumnTransformer``.

    Build with :meth:`from_fitted`; :meth:`transform` returns the same array as the
    transformer, or None when the rows hold something it does not handle (the caller then
    uses scikit-learn).
    """

    def __init__(self, numeric, numeric_kind, fill, mean, scale, categorical, lookups, widths):
        self.numeric = numeric
        self.numeric_kind = numeric_kind  # "passthrough", "median" or "scaled"
        self.fill, self.mean, self.scale = fill, mean, scale
        self.categorical = categorical
        self.lookups = lookups  # per column: a _Lookup from category to output index
        self.widths = widths  # per column: output columns (1 for ordinal codes)
        self.one_hot = widths is not None and any(w is not None for w in widths)
        self.n_out = len(numeric) + (sum(widths) if self.one_hot else len(categorical))

    # ------------------------------------------------------------ build
    @classmethod
    def from_fitted(cls, transformer) -> CompiledEncoder | None:
        """The compiled form of ``transformer``, or None if it is not one this module knows
        or does not reproduce it exactly."""
        try:
            compiled = cls._read(transformer)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            return None
        if compiled is None:
            return None
        probe = _probe_rows(transformer)
        try:
            expected = transformer.transform(probe)
        except Exception:  # a transformer that cannot take the probe: leave it to sklearn
            return None
        got = compiled.transform(probe)
        if (
            got is None
            or not isinstance(expected, np.ndarray)
            or got.shape != expected.shape
            or got.dtype != expected.dtype
            or not np.array_equal(got, expected, equal_nan=True)
        ):
            return None
        return compiled

    @classmethod
    def _read(cls, ct) -> CompiledEncoder | None:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import (
            FunctionTransformer,
            OneHotEncoder,
            OrdinalEncoder,
            StandardScaler,
        )

        from ensemblex.preprocessing import TextCategories

        if not isinstance(ct, ColumnTransformer) or ct.sparse_output_:
            return None
        numeric, categorical = [], []
        kind = fill = mean = scale = None
        lookups, widths = [], None
        for name, step, columns in ct.transformers_:
            if name == "remainder":
                if step != "drop":
                    return None
                continue
            steps = step.steps if isinstance(step, Pipeline) else [(name, step)]
            objects = [s for _, s in steps]
            if name == "num":
                numeric = list(columns)
                n = len(numeric)
                fill, mean, scale = np.zeros(n), np.zeros(n), np.ones(n)
                if len(objects) == 1 and isinstance(objects[0], FunctionTransformer):
                    if objects[0].func is not None:
                        return None
                    kind = "passthrough"
                elif isinstance(objects[0], SimpleImputer) and objects[0].strategy == "median":
                    fill = np.asarray(objects[0].statistics_, dtype=np.float64)
                    kind = "median"
                    if len(objects) == 2 and isinstance(objects[1], StandardScaler):
                        mean = np.asarray(objects[1].mean_, dtype=np.float64)
                        scale = np.asarray(objects[1].scale_, dtype=np.float64)
                        kind = "scaled"
                    elif len(objects) != 1:
                        return None
                else:
                    return None
            elif name == "cat":
                categorical = list(columns)
                if not isinstance(objects[0], TextCategories):
                    return None
                encoder = objects[-1]
                if isinstance(encoder, OrdinalEncoder) and len(objects) == 2:
                    if encoder.unknown_value != -1 or encoder.encoded_missing_value != -1:
                        return None
                    for categories in encoder.categories_:
                        known = [c for c in categories if isinstance(c, str)]
                        if len(known) != len(categories) - _count_missing(categories):
                            return None
                        lookups.append(_Lookup(known, np.arange(len(known))))
                elif isinstance(encoder, OneHotEncoder) and len(objects) == 3:
                    imputer = objects[1]
                    if (
                        not isinstance(imputer, SimpleImputer)
                        or imputer.strategy != "constant"
                        or imputer.fill_value != MISSING
                        or encoder.handle_unknown != "ignore"
                        or encoder.drop_idx_ is not None
                        or encoder.sparse_output
                    ):
                        return None
                    widths = list(encoder._n_features_outs)
                    mappings = encoder._default_to_infrequent_mappings
                    for j, categories in enumerate(encoder.categories_):
                        if not all(isinstance(c, str) for c in categories):
                            return None
                        mapping = mappings[j]
                        target = (
                            np.arange(len(categories)) if mapping is None else np.asarray(mapping)
                        )
                        lookups.append(_Lookup(list(categories), target))
                else:
                    return None
            else:
                return None
        if kind is None and numeric:
            return None
        return cls(numeric, kind, fill, mean, scale, categorical, lookups, widths)

    # ------------------------------------------------------------ transform
    def transform(self, X: pd.DataFrame, columns: TableColumns | None = None) -> np.ndarray | None:
        """The encoded rows ``(n, n_out)``, float64; None for rows it does not handle.

        ``columns``: the table's columns read once (:class:`TableColumns` of ``X``), shared by
        the encoders of one prediction so that each reads the table only once.
        """
        columns = TableColumns(X) if columns is None else columns
        n = len(X)
        out = np.zeros((n, self.n_out))
        p = len(self.numeric)
        if p:
            block = columns.numbers(self.numeric)
            if block is None:
                return None
            out[:, :p] = block
        if p and self.numeric_kind != "passthrough":
            block = out[:, :p]
            missing = np.isnan(block)
            if missing.any():
                block[missing] = np.broadcast_to(self.fill, block.shape)[missing]
            if self.numeric_kind == "scaled":
                block -= self.mean
                block /= self.scale
        offset = p
        for j, col in enumerate(self.categorical):
            cells = columns.text(col)
            if cells is None:
                return None
            filled, missing = cells
            codes = self.lookups[j].codes(filled)
            if self.one_hot:
                known = codes >= 0
                rows = np.flatnonzero(known)
                out[rows, offset + codes[known]] = 1.0
                offset += self.widths[j]
            else:
                codes = codes.astype(np.float64)
                codes[missing] = -1.0
                out[:, offset] = codes
                offset += 1
        return out


class _Lookup:
    """Categories to output indices (-1 for an unknown category) by binary search in the
    sorted categories: 3 us for one row where ``pd.Index.get_indexer`` takes 70 us, and
    faster on 10,000 rows too."""

    def __init__(self, categories: list[str], target: np.ndarray):
        order = np.argsort(np.asarray(categories, dtype=object), kind="stable")
        self.sorted = np.asarray(categories, dtype=object)[order]
        self.target = np.asarray(target, dtype=np.int64)[order]
        if len(set(categories)) != len(categories):
            raise ValueError("categories must be distinct")

    def codes(self, cells: np.ndarray) -> np.ndarray:
        """Output index per cell (text), -1 where the category is unknown."""
        if not len(self.sorted):
            return np.full(len(cells), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted, cells), len(self.sorted) - 1)
        return np.where(self.sorted[pos] == cells, self.target[pos], -1)


class TableColumns:
    """The columns of one table as the compiled encoders read them, each converted once.

    Reading a pandas column costs more than encoding it on a few rows, and the members of an
    ensemble have two or three distinct encoders over the same columns.
    """

    def __init__(self, X: pd.DataFrame):
        self.X = X
        self._numbers: dict[tuple, np.ndarray | None] = {}
        self._text: dict[str, tuple | None] = {}

    def numbers(self, cols: list[str]) -> np.ndarray | None:
        """Columns ``cols`` as float64 ``(n, len(cols))``, NaN where missing; None when one
        of them is not numeric (or is boolean)."""
        key = tuple(cols)
        if key not in self._numbers:
            from ensemblex.preprocessing import is_numeric

            dtypes = self.X.dtypes
            numeric = all(is_numeric(dtypes[c]) for c in cols)
            # column by column: selecting several columns of a mixed frame first costs 200 us
            self._numbers[key] = (
                np.column_stack([_floats(self.X[c]) for c in cols]) if numeric else None
            )
        return self._numbers[key]

    def text(self, col: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Column ``col`` as an object array with missing cells as :data:`MISSING` (the
        one-hot encoding's fill), and the missing mask; None unless it holds text."""
        if col not in self._text:
            values = self.X[col]
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
                self._text[col] = None
            else:
                missing = values.isna().to_numpy()
                filled = values.to_numpy(dtype=object)
                if missing.any():
                    filled = filled.copy()
                    filled[missing] = MISSING
                self._text[col] = (filled, missing)
        return self._text[col]


def _floats(column: pd.Series) -> np.ndarray:
    """A numeric column as float64, NaN where missing (a numpy column needs no NA scan)."""
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy().astype(np.float64, copy=False)
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _count_missing(categories) -> int:
    return sum(1 for c in categories if not isinstance(c, str) and pd.isna(c))


def _probe_rows(ct) -> pd.DataFrame:
    """Rows that exercise the transformer: each category of every categorical column,
    missing values everywhere, unknown categories, and ordinary numbers."""
    numeric, categorical = [], []
    categories = []
    for name, step, columns in ct.transformers_:
        if name == "num":
            numeric = list(columns)
        elif name == "cat":
            categorical = list(columns)
            encoder = step.steps[-1][1] if hasattr(step, "steps") else step
            categories = [[c for c in cats if isinstance(c, str)] for cats in encoder.categories_]
    n = max([len(c) for c in categories] + [1]) + 2
    frame = {}
    for col in ct.feature_names_in_:
        if col in numeric:
            values = np.linspace(-3.0, 1e5, n)
            values[-1] = np.nan
            frame[col] = values
        elif col in categorical:
            cats = categories[categorical.index(col)] or ["a"]
            cells = [cats[i % len(cats)] for i in range(n - 2)] + [None, "__never_seen__"]
            frame[col] = pd.Series(cells, dtype=object)
        else:
            frame[col] = pd.Series(["x"] * n, dtype=object)
    return pd.DataFrame(frame)
