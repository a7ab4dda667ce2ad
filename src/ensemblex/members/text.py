"""Text members: TF-IDF n-grams and a linear model, written only against the protocol; the
free-text column detector and the default text zoo.

A text member reads one text column of the raw table (by default the free-text column with
the longest texts), so it sees columns the tabular encodings leave out as ID-like, and saves
its pipeline with skops. In a mixed table (text and numeric columns) the tabular members keep
reading the other columns. Sentence-embedding members live in
:mod:`ensemblex.members.embeddings`, zero-shot prompt members in
:mod:`ensemblex.members.prompts`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline

from ensemblex.members.base import FoldContext, Member, one_column
from ensemblex.members.skops_io import dump_skops, load_skops


class TfidfLogistic(Member):
    """TF-IDF of word or character n-grams, then a logistic regression (classification).

    Parameters
    ----------
    name : str
    column : str, optional
        Text column; default: the free-text column (:func:`text_columns`) with the longest
        texts, else the string column with the longest mean length.
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
        self._check_task(context.task)
        column = self.column or pick_text_column(X, self.name)
        fitted = type(self)(self.name, column, self.analyzer, self.ngram_max, self.C)
        fitted.task = context.task
        fitted.pipeline_ = make_pipeline(
            _vectorizer(self.analyzer, self.ngram_max), fitted._model()
        )
        fitted.pipeline_.fit(_texts(X, column, self.name), y)
        return fitted

    def _check_task(self, task: str) -> None:
        if task == "regression":
            raise ValueError(
                f"member {self.name!r}: TfidfLogistic is for classification; use TfidfRidge "
                f"for regression, however: task={task!r}"
            )

    def _model(self):
        return LogisticRegression(C=self.C, max_iter=2000)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.pipeline_ is None:
            raise ValueError(f"member {self.name!r} is not fitted")
        texts = _texts(X, self.column, self.name)
        if self.task == "regression":
            return one_column(self.pipeline_.predict(texts), self.task)
        return one_column(self.pipeline_.predict_proba(texts), self.task)

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
            f"{type(self).__name__}({self.name!r}, column={self.column!r}, "
            f"analyzer={self.analyzer!r}, ngram_max={self.ngram_max}, C={self.C})"
        )


class TfidfRidge(TfidfLogistic):
    """TF-IDF of word or character n-grams, then a ridge regression (regression).

    Parameters
    ----------
    name, column, analyzer, ngram_max
        As in :class:`TfidfLogistic`.
    C : float, default 10.0
        Inverse L2 strength: the ridge's ``alpha = 1 / C``.

    Examples
    --------
    >>> from ensemblex.members.base import FoldContext
    >>> from ensemblex.preprocessing import Schema
    >>> X = pd.DataFrame({"text": ["a big house", "a small flat"] * 10})
    >>> y = np.array([3.0, 1.0] * 10)
    >>> fitted = TfidfRidge("words").fit(X, y, FoldContext("regression", Schema([], [])))
    >>> fitted.predict(X[:2]).round(1).ravel().tolist()
    [3.0, 1.0]
    """

    family = "tfidf_ridge"

    def __init__(self, name="tfidf_ridge", column=None, analyzer="word", ngram_max=2, C=10.0):
        super().__init__(name, column, analyzer, ngram_max, C)

    def _check_task(self, task: str) -> None:
        if task != "regression":
            raise ValueError(
                f"member {self.name!r}: TfidfRidge is for regression; use TfidfLogistic for "
                f"classification, however: task={task!r}"
            )

    def _model(self):
        return Ridge(alpha=1.0 / self.C)


def _vectorizer(analyzer: str, ngram_max: int) -> TfidfVectorizer:
    if analyzer not in ANALYZERS:
        raise ValueError(f"analyzer must be one of {ANALYZERS}, however: analyzer={analyzer!r}")
    low = 2 if analyzer == "char_wb" else 1
    return TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=(low, max(low, int(ngram_max))),
        sublinear_tf=True,
        min_df=2,
    )


ANALYZERS = ("word", "char_wb")

# ---------------------------------------------------------------- free-text columns

# A free-text column: at least this share of its non-missing cells has MIN_WORDS words or
# more, and at least this share of them are distinct (categories such as "Male"/"Female" or
# "Bachelor's degree" repeat; short codes and names have one or two words).
MIN_WORDS = 3
MULTI_WORD_SHARE = 0.5
DISTINCT_SHARE = 0.5


def text_columns(frame: pd.DataFrame) -> list[str]:
    """The free-text columns of ``frame``: string columns whose cells are mostly multi-word
    (:data:`MIN_WORDS` words or more) and mostly distinct, longest texts first.

    Examples
    --------
    >>> frame = pd.DataFrame({
    ...     "sex": ["Male", "Female"] * 3,
    ...     "id": [f"u{i}" for i in range(6)],
    ...     "note": [f"customer {i} called about the late parcel" for i in range(6)],
    ...     "age": range(6),
    ... })
    >>> text_columns(frame)
    ['note']
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, however: {type(frame).__name__}")
    found = {}
    for col in frame.columns:
        values = frame[col]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        cells = values.dropna().astype(str)
        if len(cells) == 0:
            continue
        words = cells.str.split().str.len()
        if (words >= MIN_WORDS).mean() >= MULTI_WORD_SHARE and (
            cells.nunique() / len(cells) >= DISTINCT_SHARE
        ):
            found[col] = cells.str.len().mean()
    return sorted(found, key=lambda c: -found[c])


def pick_text_column(X: pd.DataFrame, name: str) -> str:
    """The column a text member reads by default: the free-text column with the longest
    texts, else the string column with the longest strings."""
    found = text_columns(X)
    return found[0] if found else _longest_text_column(X, name)


def text_members(
    task: str, random_state: int = 0, columns=None, embeddings: bool = True
) -> list[Member]:
    """The default text zoo: per text column, TF-IDF of words and of characters with a
    linear model, and MiniLM sentence embeddings with a linear and an MLP head.

    Parameters
    ----------
    task : {"binary", "multiclass", "regression"}
    random_state : int, default 0
        Seed of the MLP heads.
    columns : list of str, optional
        Text columns (for example ``text_columns(frame)``); default: each member picks the
        free-text column with the longest texts. With several columns, each member is made
        once per column and named ``<member>@<column>``.
    embeddings : bool, default True
        Include the MiniLM members (False: the two TF-IDF members only, which need no
        encoder: the ``fast`` zoo).

    Returns
    -------
    list of Member
        Four members per column: ``tfidf_words``, ``tfidf_chars``, ``minilm_linear``,
        ``minilm_mlp``.

    Examples
    --------
    >>> [m.name for m in text_members("binary")]
    ['tfidf_words', 'tfidf_chars', 'minilm_linear', 'minilm_mlp']
    """
    from ensemblex.members.embeddings import SentenceEmbedding

    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(
            f"task must be 'binary', 'multiclass' or 'regression', however: task={task!r}"
        )
    if columns is not None and (
        isinstance(columns, str) or not all(isinstance(c, str) for c in columns)
    ):
        raise ValueError(f"columns must be a list of column names, however: {columns!r}")
    tfidf = TfidfRidge if task == "regression" else TfidfLogistic
    members = []
    for column in [None] if not columns else list(columns):
        suffix = "" if column is None or len(columns) == 1 else "@" + _safe(column)
        members += [
            tfidf("tfidf_words" + suffix, column, "word", 2, 10.0),
            tfidf("tfidf_chars" + suffix, column, "char_wb", 5, 10.0),
        ]
        if embeddings:
            members += [
                SentenceEmbedding("minilm_linear" + suffix, column, "linear", C=0.1),
                SentenceEmbedding("minilm_mlp" + suffix, column, "mlp", random_state=random_state),
            ]
    return members


def _safe(column: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(column)).lstrip(".")


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
