"""The fitted end-to-end ensemble: cross-fitted members plus a combiner; save and load.

Saved format: a directory with ``manifest.json`` (package versions, task, classes, feature
schema, members, combiner, and a SHA-256 per file, all paths relative) beside each fold's
preprocessor (skops) and model (LightGBM text, XGBoost JSON, CatBoost cbm or skops). Loading
checks every hash, refuses files the manifest does not list, and never unpickles.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import weakref
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ensemblex.combiners import AutoCombiner, default_candidates
from ensemblex.combiners.persistence import combiner_state, load_combiner
from ensemblex.crossfit import crossfit, make_splits
from ensemblex.members.families import n_columns, predict_columns
from ensemblex.members.zoo import resolve_members
from ensemblex.metrics import get_metric
from ensemblex.predictions import Predictions
from ensemblex.preprocessing import Schema, infer_schema
from ensemblex.store import RunStore, sha256_file, write_json_atomic
from ensemblex.tasks import encode_labels

FORMAT = "ensemblex-ensemble"
FORMAT_VERSION = 1
_PACKAGES = (
    "ensemblex",
    "numpy",
    "pandas",
    "scikit-learn",
    "skops",
    "lightgbm",
    "xgboost",
    "catboost",
)


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


class _Ensemble(BaseEstimator):
    """Shared logic of :class:`EnsembleRegressor` and :class:`EnsembleClassifier`."""

    _classifier = False

    def __init__(
        self,
        members="default",
        combiner="auto",
        cv=5,
        metric="auto",
        random_state=0,
        backend="local",
        n_jobs=None,
        ray_address=None,
        work_dir=None,
    ):
        self.members = members
        self.combiner = combiner
        self.cv = cv
        self.metric = metric
        self.random_state = random_state
        self.backend = backend
        self.n_jobs = n_jobs
        self.ray_address = ray_address
        self.work_dir = work_dir

    # ------------------------------------------------------------ fit
    def fit(self, X, y, progress=None):
        """Cross-fit the members, fit the combiner on their OOF predictions.

        Parameters
        ----------
        X : DataFrame
            Features; strings are categorical, ID-like columns are dropped with a warning.
        y : array-like of shape (n_samples,)
        progress : callable, optional
            ``progress(label, done, total)`` as (member, fold) pairs finish.

        Returns
        -------
        self
        """
        X = _as_frame(X)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have shape ({len(X)},), however: y.shape={y.shape}")
        if pd.isna(y).any():
            raise ValueError(f"y is missing at row {int(np.argmax(pd.isna(y)))}")
        self.schema_ = infer_schema(X, source="X")
        if self._classifier:
            self.classes_, codes = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError("y has a single class; a classifier needs at least two")
            self.task_ = "binary" if len(self.classes_) == 2 else "multiclass"
        else:
            if not pd.api.types.is_numeric_dtype(y):
                raise ValueError(
                    "y must be numeric for EnsembleRegressor; use EnsembleClassifier for labels"
                )
            codes, self.classes_, self.task_ = y.astype(np.float64), None, "regression"
        self.metric_ = get_metric(self.metric, self.task_)
        specs = resolve_members(self.members, self.task_, self.random_state)
        _check_prefitted_classes(specs, self.classes_)
        splits = make_splits(
            codes if self._classifier else y, self.task_, int(self.cv), self.random_state
        )
        temporary = not self.work_dir
        root = Path(tempfile.mkdtemp(prefix="ensemblex-")) if temporary else Path(self.work_dir)
        fingerprint = {
            "data": _frame_hash(X, y),
            "members": [[s.name, s.encoding, repr(s.estimator)] for s in specs],
            "folds": int(self.cv),
            "seed": self.random_state,
            "task": self.task_,
        }
        store = RunStore(root, fingerprint)
        start = time.perf_counter()
        P, seconds = crossfit(
            specs,
            X[self.schema_.features],
            codes,
            self.schema_,
            self.task_,
            splits,
            store,
            classes=self.classes_,
            backend=self.backend,
            n_jobs=self.n_jobs,
            ray_address=self.ray_address,
            progress=progress,
        )
        self.crossfit_seconds_ = time.perf_counter() - start
        self.member_names_ = list(P.members)
        self.member_seconds_ = seconds
        self.oof_ = P
        self.combiner_ = self._make_combiner()
        labels = self.classes_[codes] if self._classifier else codes
        self.oof_labels_ = labels
        start = time.perf_counter()
        self.combiner_.fit(P, labels)
        self.combiner_seconds_ = time.perf_counter() - start
        self._models = [
            [store.load_fold(s.name, k, self.task_) for k in range(len(splits))] for s in specs
        ]
        self._store_root = root
        # without a work_dir the fold files (which save() copies) live in a temporary folder
        # until this estimator is garbage-collected, refitted or the interpreter exits
        previous = getattr(self, "_remove_temporary_folds", None)
        if previous is not None:
            previous()
        self._remove_temporary_folds = (
            weakref.finalize(self, shutil.rmtree, root, ignore_errors=True) if temporary else None
        )
        self._families = [s.family for s in specs]
        self._model_names = [s.name for s in specs]
        self._model_columns = [s.column_names() for s in specs]
        self.leaderboard_ = self._leaderboard(P, labels)
        return self

    def _make_combiner(self):
        if self.combiner == "auto":
            return AutoCombiner(
                metric=self.metric_, cv=int(self.cv), random_state=self.random_state
            )
        if isinstance(self.combiner, str):
            pool = default_candidates(self.metric_, self.random_state)
            if self.combiner not in pool:
                raise ValueError(
                    f"combiner must be 'auto', one of {list(pool)} or a combiner, "
                    f"however: combiner={self.combiner!r}"
                )
            return pool[self.combiner]
        from sklearn.base import clone

        return clone(self.combiner)

    def _leaderboard(self, P: Predictions, labels) -> pd.DataFrame:
        y = encode_labels(labels, self.classes_) if self._classifier else labels
        losses = self.metric_.loss_batch(y, P.values.transpose(1, 0, 2))
        sign = -1.0 if self.metric_.greater_is_better else 1.0
        rows = [
            {
                "model": name,
                "kind": "member",
                "cv_score": sign * loss,
                "fit_seconds": self.member_seconds_[name]["fit"],
                "predict_seconds_per_row": self.member_seconds_[name]["predict_per_row"],
            }
            for name, loss in zip(P.members, losses)
        ]
        # Combiners carry their nested-CV score: refit inside each outer fold of the OOF rows.
        scores = getattr(self.combiner_, "scores_", None) or {}
        seconds = getattr(self.combiner_, "fit_seconds_", {})
        chosen = getattr(self.combiner_, "method_", None)
        for name, score in scores.items():
            kind = "combiner (chosen)" if name == chosen else "combiner"
            rows.append(
                {"model": name, "kind": kind, "cv_score": score, "fit_seconds": seconds.get(name)}
            )
        board = pd.DataFrame(rows)
        order = np.argsort(sign * board["cv_score"].to_numpy(), kind="stable")
        return board.iloc[order].reset_index(drop=True)

    # ------------------------------------------------------------ predict
    def member_predictions(self, X) -> Predictions:
        """Every member's predictions on new rows: the mean of its fold models."""
        self._check_fitted()
        X = self.schema_.check(_as_frame(X), source="X")
        n_outputs = 1 if self.task_ == "regression" else len(self.classes_)
        values = np.zeros((len(X), len(self.member_names_), n_outputs))
        start = 0
        for folds, columns in zip(self._models, self._model_columns):
            block = slice(start, start + len(columns))
            for preprocessor, model in folds:
                values[:, block] += predict_columns(model, preprocessor.transform(X), self.task_)
            values[:, block] /= len(folds)
            start += len(columns)
        return Predictions(
            values,
            self.member_names_,
            self.task_,
            classes=self.classes_,
            source="member predictions",
        )

    def _predict_outputs(self, X) -> np.ndarray:
        return self.combiner_.predict(self.member_predictions(X))

    def _check_fitted(self):
        if not hasattr(self, "combiner_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit or load first")

    # ------------------------------------------------------------ save / load
    def save(self, path) -> Path:
        """Save to a directory (written beside, then renamed into place)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            members = []
            for name, family, folds, columns in zip(
                self._model_names, self._families, self._models, self._model_columns
            ):
                fold_files = []
                for k in range(len(folds)):
                    src = self._store_root / "folds" / name / f"fold{k}"
                    done = json.loads((src / "done.json").read_text())
                    dst = tmp / "members" / name / f"fold{k}"
                    dst.mkdir(parents=True)
                    for f in ("preprocessor.skops", done["model"]):
                        shutil.copy2(src / f, dst / f)
                    fold_files.append(
                        {
                            "preprocessor": f"members/{name}/fold{k}/preprocessor.skops",
                            "model": f"members/{name}/fold{k}/{done['model']}",
                        }
                    )
                members.append(
                    {"name": name, "family": family, "columns": columns, "folds": fold_files}
                )
            (tmp / "combiner").mkdir()
            state, _ = combiner_state(self.combiner_, tmp / "combiner")
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "estimator": type(self).__name__,
                "params": {
                    k: v
                    for k, v in self.get_params().items()
                    if isinstance(v, str | int | float | type(None))
                },
                "versions": _versions(),
                "task": self.task_,
                "classes": None if self.classes_ is None else [_plain(c) for c in self.classes_],
                "metric": self.metric_.name,
                "schema": self.schema_.to_dict(),
                "members": members,
                "combiner": state,
                "leaderboard": json.loads(self.leaderboard_.to_json(orient="records")),
                "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files},
            }
            write_json_atomic(manifest, tmp / "manifest.json")
            if path.exists():
                shutil.rmtree(path)
            tmp.replace(path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path):
        """Load a saved ensemble; refuses changed, missing or foreign files."""
        from ensemblex.members.families import load_model, load_skops

        path = Path(path)
        manifest = _read_manifest(path)
        expected = cls.__name__ if cls is not _Ensemble else manifest["estimator"]
        if manifest["estimator"] != expected:
            raise ValueError(f"{path}: holds an {manifest['estimator']}, not an {expected}")
        _verify_files(path, manifest["sha256"])
        target = {"EnsembleRegressor": EnsembleRegressor, "EnsembleClassifier": EnsembleClassifier}[
            manifest["estimator"]
        ]
        self = target(**manifest["params"])
        self.task_ = manifest["task"]
        self.classes_ = None if manifest["classes"] is None else np.asarray(manifest["classes"])
        self.metric_ = get_metric(manifest["metric"], self.task_)
        self.schema_ = Schema.from_dict(manifest["schema"])
        self._model_names = [m["name"] for m in manifest["members"]]
        self._model_columns = [m.get("columns", [m["name"]]) for m in manifest["members"]]
        self.member_names_ = [c for columns in self._model_columns for c in columns]
        self._families = [m["family"] for m in manifest["members"]]
        self._models = [
            [
                (
                    load_skops(path / f["preprocessor"]),
                    load_model(path / f["model"], m["family"], self.task_),
                )
                for f in m["folds"]
            ]
            for m in manifest["members"]
        ]
        for m, folds in zip(manifest["members"], self._models):
            for _, model in folds:
                if n_columns(model) != len(m.get("columns", [m["name"]])):
                    raise ValueError(
                        f"{path}: member {m['name']!r} lists {len(m.get('columns', [1]))} "
                        f"columns, however its model yields {n_columns(model)}"
                    )
        self.combiner_ = load_combiner(manifest["combiner"], path / "combiner")
        self.leaderboard_ = pd.DataFrame(manifest["leaderboard"])
        self._store_root = None
        return self


def _check_prefitted_classes(specs, classes) -> None:
    for spec in specs:
        fitted = getattr(spec.estimator, "classes_", None)
        if (
            spec.prefitted
            and classes is not None
            and fitted is not None
            and [str(c) for c in fitted] != [str(c) for c in classes]
        ):
            raise ValueError(
                f"prefitted member {spec.name!r} predicts classes {list(fitted)}, however y "
                f"has classes {list(classes)}"
            )


def _read_manifest(path: Path) -> dict:
    file = path / "manifest.json"
    if not file.is_file():
        raise ValueError(f"{path}: no manifest.json; not a saved ensemblex ensemble")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{file}: not an {FORMAT} manifest of version {FORMAT_VERSION}")
    return manifest


def _verify_files(path: Path, hashes: dict) -> None:
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    present.discard("manifest.json")
    foreign = sorted(present - set(hashes))
    if foreign:
        raise ValueError(f"{path}: refuses to load: files not listed in the manifest {foreign}")
    for rel, digest in hashes.items():
        file = path / rel
        if not file.is_file():
            raise ValueError(f"{path}: file {rel} listed in the manifest is missing")
        if sha256_file(file) != digest:
            raise ValueError(
                f"{path}: file {rel} was changed since it was saved (SHA-256 "
                "mismatch); refusing to load it"
            )


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _as_frame(X) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, however: X.shape={array.shape}")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def _frame_hash(X: pd.DataFrame, y: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(y), index=False).to_numpy().tobytes())
    h.update(json.dumps([str(c) for c in X.columns]).encode())
    return h.hexdigest()


class EnsembleRegressor(RegressorMixin, _Ensemble):
    """Cross-fitted zoo plus a combiner chosen by nested CV, for regression.

    Parameters
    ----------
    members : "default", "fast" or list
        A zoo name, or estimators, ``(name, estimator)`` pairs or ``MemberSpec``.
    combiner : "auto", a combiner name, or a combiner
    cv : int, default 5
        Cross-fitting folds (and outer folds of the combiner's nested CV).
    metric : str, default "auto"
    random_state : int, default 0
    backend : {"local", "ray"}
    n_jobs : int, optional
        Parallel (member, fold) tasks; default all cores.
    ray_address : str, optional
    work_dir : path, optional
        Where finished folds are written; a rerun with the same data and settings resumes.
        Without it, a temporary folder that is removed with the estimator (or on refit).

    Attributes
    ----------
    leaderboard_ : DataFrame
        Every member (OOF score, seconds) and every combiner candidate (nested-CV score).
    combiner_, oof_, schema_, member_names_
    """

    _classifier = False

    def predict(self, X) -> np.ndarray:
        """Predicted values, shape (n_samples,)."""
        return self._predict_outputs(X)[:, 0]


class EnsembleClassifier(ClassifierMixin, _Ensemble):
    """Cross-fitted zoo plus a combiner chosen by nested CV, for classification.

    Parameters are those of :class:`EnsembleRegressor`.

    Attributes
    ----------
    classes_ : ndarray
    leaderboard_ : DataFrame
    """

    _classifier = True

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        return self._predict_outputs(X)

    def predict(self, X) -> np.ndarray:
        """Most probable class labels."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
