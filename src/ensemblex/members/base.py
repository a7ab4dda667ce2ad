"""The member protocol: what every model family implements, and nothing else is asked of it.

A :class:`Member` is one named entry of a zoo. Unfitted, it holds a template (an estimator
and its settings); :meth:`Member.fit` returns a *new* fitted member for one fold, which
predicts ``(n_samples, n_columns, n_outputs)``, saves itself into a folder in its library's
safe format, and loads back from that folder. Cross-fitting, the run store, the ensemble and
its save/load talk only to this protocol, so a new family (a text model, a graph network, a
model trained elsewhere) is one module plus one line in :mod:`ensemblex.members.registry`.

A member's folder always holds ``member.json`` (family, name, columns, task, the family's own
settings and the SHA-256 of every other file); loading reads it, checks every file against its
digest *before* a native library parses it (a damaged LightGBM file can crash the process, a
damaged CatBoost file loads silently), looks the family up in the registry and lets the family
read its files. Nothing is unpickled.

:class:`TabularMember` is the base of the families that read table columns through the
per-family encodings of :mod:`ensemblex.preprocessing` (scikit-learn, GBDTs, torch networks).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import clone

from ensemblex.compiled_encoding import CompiledEncoder, TableColumns
from ensemblex.files import sha256_file
from ensemblex.members.skops_io import dump_skops, load_skops, skops_content_digest
from ensemblex.preprocessing import ENCODINGS, Schema, categorical_indices, make_preprocessor

MEMBER_FILE = "member.json"


@dataclass(frozen=True)
class FoldContext:
    """What a member learns about the data besides its training rows.

    Attributes
    ----------
    task : {"regression", "binary", "multiclass"}
    schema : Schema
        Column kinds of the training table (tabular members encode these columns).
    n_classes : int
        Number of classes (0 for regression); labels arrive as codes ``0..n_classes-1``.
    n_threads : int
        Threads the member's own library may use, so parallel folds share the cores.
    """

    task: str
    schema: Schema
    n_classes: int = 0
    n_threads: int = 1

    @property
    def n_outputs(self) -> int:
        return 1 if self.task == "regression" else self.n_classes


class Member(ABC):
    """One member of a zoo: fitted per fold, predicting one or several columns of ``P``.

    Subclasses set :attr:`family` (the registry name) and implement :meth:`fit`,
    :meth:`predict`, :meth:`save_files` and :meth:`load_files`.

    Parameters
    ----------
    name : str
        Member name; a family yielding several columns names them ``name.0``, ``name.1``...
    """

    family: ClassVar[str]

    def __init__(self, name: str):
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(
                f"member name must be a non-empty string without '/' or a leading '.', "
                f"however: name={name!r}"
            )
        self.name = name
        self.task: str | None = None  # set when fitted or loaded

    # ------------------------------------------------------------ what a family implements
    @abstractmethod
    def fit(self, X: pd.DataFrame, y: np.ndarray, context: FoldContext) -> Member:
        """A new fitted member trained on ``X`` (all columns of the table) and ``y`` (values,
        or class codes). The unfitted template is left as it is."""

    @abstractmethod
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predictions ``(n_samples, n_columns, n_outputs)``: values or class probabilities."""

    @abstractmethod
    def save_files(self, folder: Path) -> dict[str, Any]:
        """Write the fitted member's files into ``folder``; return the JSON-able settings that
        :meth:`load_files` needs to read them back."""

    @classmethod
    @abstractmethod
    def load_files(cls, folder: Path, name: str, task: str, settings: dict) -> Member:
        """Rebuild a fitted member from ``folder`` without executing code from its files."""

    # ------------------------------------------------------------ shared behaviour
    def n_columns(self) -> int:
        """How many columns of the predictions array this member yields."""
        return 1

    def outputs(self) -> tuple[str, ...] | None:
        """What a regression member predicts per column: None for one value, or output names
        (``("mean", "var")`` for a Gaussian, see :mod:`ensemblex.predictions`)."""
        return None

    def column_names(self) -> list[str]:
        """Names of this member's columns in the predictions array."""
        n = self.n_columns()
        return [self.name] if n == 1 else [f"{self.name}.{j}" for j in range(n)]

    def fingerprint(self) -> list:
        """What makes two members the same (a changed setting means a new run)."""
        return [self.name, self.family, repr(self)]

    def save(self, folder: Path) -> Path:
        """Write the fitted member to ``folder`` (created): its files and ``member.json``."""
        if self.task is None:
            raise ValueError(f"member {self.name!r} is not fitted; fit it before saving")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        settings = self.save_files(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / MEMBER_FILE)
        meta = {
            "family": self.family,
            "name": self.name,
            "task": self.task,
            "columns": self.column_names(),
            "settings": settings,
            "files": {p.relative_to(folder).as_posix(): sha256_file(p) for p in files},
        }
        (folder / MEMBER_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def load_member(folder: Path) -> Member:
    """Load a member saved by :meth:`Member.save`: its family comes from ``member.json`` and
    must be registered (:mod:`ensemblex.members.registry`)."""
    from ensemblex.members.registry import family_class

    folder = Path(folder)
    try:
        meta = json.loads((folder / MEMBER_FILE).read_text())
        family, name, task = meta["family"], meta["name"], meta["task"]
        settings, columns = dict(meta.get("settings") or {}), list(meta["columns"])
        files = dict(meta["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        file = folder / MEMBER_FILE
        raise ValueError(f"{file}: not a readable member description ({exc})") from None
    _verify_files(folder, files)
    member = family_class(family).load_files(folder, name, task, settings)
    member.task = task
    if member.column_names() != columns:
        raise ValueError(
            f"{folder}: member {name!r} lists columns {columns}, however its model yields "
            f"{member.column_names()}"
        )
    return member


def _verify_files(folder: Path, files: dict) -> None:
    """Every file ``member.json`` lists is a regular file inside the folder and matches its
    digest (families read only the files they listed at save)."""
    root = folder.resolve()
    for rel, digest in files.items():
        path = folder / str(rel)
        if path.is_symlink() or root not in path.resolve().parents:
            raise ValueError(f"{path}: not a file inside the member folder {folder}")
        if not path.is_file():
            raise ValueError(f"{path}: missing (listed in {folder / MEMBER_FILE})")
        if sha256_file(path) != digest:
            raise ValueError(
                f"{path}: damaged (its SHA-256 differs from the one in {folder / MEMBER_FILE})"
            )


# ---------------------------------------------------------------- tabular families
class TabularMember(Member):
    """A model over table columns, behind the per-family encoding of
    :func:`ensemblex.preprocessing.make_preprocessor` fitted on the fold.

    Subclasses implement :meth:`fit_model`, :meth:`predict_model`, :meth:`save_model` and
    :meth:`load_model`, and may set :attr:`default_encoding` and :attr:`thread_param`.

    Parameters
    ----------
    name : str
    estimator : estimator
        An unfitted scikit-learn-compatible estimator (cloned for every fold).
    encoding : {"native", "onehot", "ordinal", "raw"}, optional
        Default: the family's :meth:`encoding_for` the estimator.
    """

    thread_param: ClassVar[str | None] = None  # the estimator's own thread-count parameter
    suffix: ClassVar[str]  # model file suffix
    library: ClassVar[str | None] = None  # top-level module of the estimators it accepts
    default_encoding: ClassVar[str] = "onehot"

    def __init__(self, name: str, estimator=None, encoding: str | None = None):
        super().__init__(name)
        self.estimator = estimator
        self.encoding = encoding if encoding is not None else self.encoding_for(estimator)
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"member {name!r}: encoding must be one of {ENCODINGS}, "
                f"however: encoding={self.encoding!r}"
            )
        self.preprocessor_ = None
        self.model_ = None

    @classmethod
    def accepts(cls, estimator) -> bool:
        """Whether this family handles ``estimator`` (used to pick a family for it): by
        default, an estimator defined by :attr:`library`."""
        return cls.library is not None and type(estimator).__module__.split(".")[0] == cls.library

    @classmethod
    def encoding_for(cls, estimator) -> str:
        """The input encoding of ``estimator`` when the member does not name one."""
        return cls.default_encoding

    def adopt(self, model):
        """The object to keep as ``model_`` for an estimator fitted elsewhere."""
        return model

    # subclasses ------------------------------------------------------
    def fit_model(self, estimator, X: np.ndarray, y: np.ndarray, context: FoldContext):
        """Fit ``estimator`` (a fresh clone) on encoded rows; return the fitted model."""
        estimator.fit(X, y)
        return estimator

    def predict_model(self, X) -> np.ndarray:
        """Predictions ``(n_samples, n_columns, n_outputs)`` of ``self.model_`` on encoded rows
        (by default scikit-learn's ``predict`` / ``predict_proba``)."""
        if self.task == "regression":
            return one_column(self.model_.predict(X), self.task)
        return one_column(self.model_.predict_proba(X), self.task)

    @abstractmethod
    def save_model(self, path: Path) -> None:
        """Write ``self.model_`` to ``path`` (``model`` + :attr:`suffix`)."""

    @classmethod
    @abstractmethod
    def load_model(cls, path: Path, task: str, settings: dict):
        """Read a model written by :meth:`save_model`."""

    # protocol ---------------------------------------------------------
    def fit(self, X, y, context):
        preprocessor = make_preprocessor(context.schema, self.encoding)
        if not context.schema.features:
            raise ValueError(
                f"member {self.name!r}: the table has no feature columns this member can read "
                f"(ID-like or text columns left out: {context.schema.dropped})"
            )
        estimator = clone(self.estimator)
        if self.thread_param and self.thread_param in estimator.get_params():
            estimator.set_params(**{self.thread_param: context.n_threads})
        fitted = self._copy(context.task)
        fitted.preprocessor_ = preprocessor
        fitted.model_ = fitted.fit_model(estimator, preprocessor.fit_transform(X), y, context)
        return fitted

    def categorical_columns(self, context: FoldContext) -> list[int]:
        """Positions of categorical codes in the encoded rows (``"native"`` encoding only)."""
        return categorical_indices(context.schema) if self.encoding == "native" else []

    def predict(self, X):
        if self.model_ is None:
            raise ValueError(f"member {self.name!r} is not fitted")
        return self._predict_encoded(self.encode(X))

    def _predict_encoded(self, Z) -> np.ndarray:
        # a twin, where serving gave the member one, for the few rows it answers faster than
        # the member's library (members/compiled_trees.py, members/compiled_neighbors.py)
        twin = getattr(self, "twin_", None)
        if twin is not None and len(Z) <= twin.max_rows:
            answer = twin.predict(Z)
            if answer is not None:  # None: rows the twin leaves to the library
                return answer
        return self.predict_model(Z)

    def encode(self, X, columns: TableColumns | None = None) -> np.ndarray:
        """The rows as the model reads them: through the compiled form of the preprocessor
        when it has one (:mod:`ensemblex.compiled_encoding`, the same numbers; ``columns``
        is ``X`` read once for several encoders), else scikit-learn's transform."""
        compiled = self.compiled_encoder()
        if compiled is not None:
            encoded = compiled.transform(X, columns)
            if encoded is not None:
                return encoded
        return self.preprocessor_.transform(X)

    def compiled_encoder(self) -> CompiledEncoder | None:
        """The compiled form of a loaded member's preprocessor (None where there is none),
        built at first use: members that share an encoding through :meth:`predict_shared`
        never build theirs (each build checks itself on probe rows, 20 ms)."""
        compiled = getattr(self, "compiled_", None)
        if isinstance(compiled, str):  # _NOT_BUILT
            compiled = self.compiled_ = CompiledEncoder.from_fitted(self.preprocessor_)
        return compiled

    def predict_shared(self, X, encoded: dict) -> np.ndarray:
        """:meth:`predict`, reusing the encoded rows of an identical preprocessor from
        ``encoded`` (one dict per input table): members refit on the same rows share their
        encodings, and encoding one row costs more than most models' prediction (2-5 ms
        against 0.02-0.7 ms on churn)."""
        key = getattr(self, "preprocessor_key_", None)
        if key is None or self.model_ is None:
            return self.predict(X)
        if key not in encoded:
            # one per table (members reading column views get other tables); it holds X, so
            # X's id cannot be reused while ``encoded`` lives
            columns = encoded.setdefault((TableColumns, id(X)), TableColumns(X))
            encoded[key] = self.encode(X, columns)
        return self._predict_encoded(encoded[key])

    def save_files(self, folder):
        dump_skops(self.preprocessor_, folder / "preprocessor.skops")
        self.save_model(folder / f"model{self.suffix}")
        return {"encoding": self.encoding, **self.model_settings()}

    def model_settings(self) -> dict:
        """Extra JSON-able settings :meth:`load_model` needs (none by default)."""
        return {}

    @classmethod
    def load_files(cls, folder, name, task, settings):
        member = cls(name, None, settings.get("encoding", "onehot"))
        member.task = task
        member.preprocessor_, member.preprocessor_key_ = _load_preprocessor(
            folder / "preprocessor.skops"
        )
        member.compiled_ = _NOT_BUILT
        member.model_ = cls.load_model(folder / f"model{cls.suffix}", task, settings)
        return member

    def fingerprint(self):
        return [self.name, self.family, self.encoding, repr(self.estimator)]

    def _copy(self, task: str) -> TabularMember:
        fitted = type(self).__new__(type(self))
        fitted.__dict__.update(self.__dict__)
        fitted.task = task
        return fitted

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {self.estimator!r}, {self.encoding!r})"


# a loaded member's compiled encoder until its first encode (a string: it survives copy and
# pickle, where a sentinel object would not be itself any more)
_NOT_BUILT = "not built"


# a preprocessor file's content digest -> the preprocessor, while loading an ensemble
_SHARED_PREPROCESSORS: ContextVar[dict | None] = ContextVar("shared_preprocessors", default=None)


@contextmanager
def sharing_preprocessors() -> Iterator[None]:
    """Within: members whose preprocessor files hold the same content share one loaded
    preprocessor. Members refit on the same rows have identical encoders (on the default
    churn zoo, 3 distinct among 11 members), and each skops load, audit and hash of one
    costs 10-30 ms."""
    token = _SHARED_PREPROCESSORS.set({})
    try:
        yield
    finally:
        _SHARED_PREPROCESSORS.reset(token)


def _load_preprocessor(path: Path):
    """The preprocessor saved at ``path`` and its key: under :func:`sharing_preprocessors`
    the digest of the file's content (shared with an earlier member's preprocessor of the
    same content), else :func:`preprocessor_key`."""
    shared = _SHARED_PREPROCESSORS.get()
    content = None if shared is None else skops_content_digest(path)
    if content is None:
        preprocessor = load_skops(path)
        return preprocessor, preprocessor_key(preprocessor)
    key = f"content:{content}"
    if key not in shared:
        shared[key] = load_skops(path)
    return shared[key], key


def preprocessor_key(preprocessor) -> str:
    """Equal for equal fitted preprocessors (joblib's hash of the object's content), so
    that members refit on the same rows encode them once (:meth:`TabularMember.predict_shared`).
    """
    import joblib

    return f"{type(preprocessor).__name__}:{joblib.hash(preprocessor)}"


def as_probabilities(proba: np.ndarray) -> np.ndarray:
    """Probabilities ``(n, k)`` from a library's output; a 1-D binary output is P(class 1)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:
        proba = np.stack([1.0 - proba, proba], axis=1)
    return proba


def one_column(values: np.ndarray, task: str) -> np.ndarray:
    """A single-member prediction ``(n, 1, n_outputs)`` from values ``(n,)`` or probabilities."""
    if task == "regression":
        return np.asarray(values, dtype=np.float64).reshape(len(values), 1, 1)
    return as_probabilities(values)[:, None, :]
