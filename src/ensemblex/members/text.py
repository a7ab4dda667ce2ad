"""A text member: TF-IDF n-grams and a logistic regression, written only against the protocol.

It reads one text column of the raw table (by default the one with the longest strings), so
it sees columns the tabular encodings leave out, and saves its pipeline with skops.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ensemblex.members.base import FoldContext, Member, one_column
from ensemblex.members.skops_io import dump_skops, load_skops


class TfidfLogistic(Member):
    """TF-IDF of word or character n-grams, then a logistic regression (classification).

    Parameters
    ----------
    name : str
    column : str, optional
        Text column; default: the text column with the longest mean length.
    analyzer : {"word", "char_wb"}, default "word"
    ngram_max : int, default 2
        n-grams of 1 to ``ngram_max`` tokens (or characters, from 2, for ``"char_wb"``).
    C : float, default 10.0
        Inverse L2 strength of the logistic regression.

    Examples
    --------
    >>> from ensemblex.members.base import FoldContext
    >>> from ensemblex.preprocessing import Schema
    >>> X = pd.DataFrame({"text": ["win a prize now", "see you at lunch"] * 10})
    >>> y = np.array([1, 0] * 10)
    >>> fitted = TfidfLogistic("words").fit(X, y, FoldContext("binary", Schema([], []), 2))
    >>> fitted.predict(X[:2]).shape, fitted.column
    ((2, 1, 2), 'text')
    """

    family = "tfidf_logistic"

    def __init__(self, name="tfidf_logistic", column=None, analyzer="word", ngram_max=2, C=10.0):
        super().__init__(name)
        self.column, self.analyzer, self.ngram_max, self.C = column, analyzer, ngram_max, C
        self.pipeline_ = None

    def fit(self, X: pd.DataFrame, y: np.ndarray, context: FoldContext) -> TfidfLogistic:
        if context.task == "regression":
            raise ValueError(f"member {self.name!r}: TfidfLogistic is for classification")
        column = self.column or _longest_text_column(X, self.name)
        low = 2 if self.analyzer == "char_wb" else 1
        vectorizer = TfidfVectorizer(
            analyzer=self.analyzer,
            ngram_range=(low, max(low, int(self.ngram_max))),
            sublinear_tf=True,
            min_df=2,
        )
        fitted = TfidfLogistic(self.name, column, self.analyzer, self.ngram_max, self.C)
        fitted.task = context.task
        fitted.pipeline_ = make_pipeline(vectorizer, LogisticRegression(C=self.C, max_iter=2000))
        fitted.pipeline_.fit(_texts(X, column, self.name), y)
        return fitted

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return one_column(
            self.pipeline_.predict_proba(_texts(X, self.column, self.name)), self.task
        )

    def save_files(self, folder) -> dict:
        dump_skops(self.pipeline_, folder / "pipeline.skops")
        return {
            "column": self.column,
            "analyzer": self.analyzer,
            "ngram_max": self.ngram_max,
            "C": self.C,
        }

    @classmethod
    def load_files(cls, folder, name, task, settings) -> TfidfLogistic:
        member = cls(name, **settings)
        member.pipeline_ = load_skops(folder / "pipeline.skops")
        return member

    def __repr__(self) -> str:
        return (
            f"TfidfLogistic({self.name!r}, column={self.column!r}, "
            f"analyzer={self.analyzer!r}, ngram_max={self.ngram_max}, C={self.C})"
        )


def _longest_text_column(X: pd.DataFrame, name: str) -> str:
    text = [
        c
        for c in X.columns
        if pd.api.types.is_object_dtype(X[c]) or pd.api.types.is_string_dtype(X[c])
    ]
    if not text:
        raise ValueError(f"member {name!r}: the table has no text column")
    return max(text, key=lambda c: X[c].astype(str).str.len().mean())


def _texts(X: pd.DataFrame, column: str, name: str) -> np.ndarray:
    if column not in X.columns:
        raise ValueError(f"member {name!r}: text column {column!r} is missing")
    return X[column].fillna("").astype(str).to_numpy()
