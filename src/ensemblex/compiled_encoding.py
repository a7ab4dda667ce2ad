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
        self.lookups = lookups  # per column: (Index of categories, output index per category)
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
                        lookups.append((pd.Index(known), np.arange(len(known))))
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
                        lookups.append((pd.Index(list(categories)), target))
                else:
                    return None
            else:
                return None
        if kind is None and numeric:
            return None
        return cls(numeric, kind, fill, mean, scale, categorical, lookups, widths)

    # ------------------------------------------------------------ transform
    def transform(self, X: pd.DataFrame) -> np.ndarray | None:
        """The encoded rows ``(n, n_out)``, float64; None for rows it does not handle."""
        n = len(X)
        out = np.zeros((n, self.n_out))
        p = len(self.numeric)
        for j, col in enumerate(self.numeric):
            values = X[col]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                return None
            out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
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
            values = X[col]
            missing = values.isna().to_numpy()
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
                return None
            index, target = self.lookups[j]
            if self.one_hot:
                if missing.any():
                    values = values.where(~missing, MISSING)
                codes = index.get_indexer(values)
                known = codes >= 0
                rows = np.flatnonzero(known)
                out[rows, offset + target[codes[known]]] = 1.0
                offset += self.widths[j]
            else:
                codes = index.get_indexer(values).astype(np.float64)
                codes[missing] = -1.0
                out[:, offset] = codes
                offset += 1
        return out


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
