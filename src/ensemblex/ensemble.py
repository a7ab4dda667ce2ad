"""The fitted end-to-end ensemble: cross-fitted members plus a combiner; save and load.

Saved format: a directory with ``manifest.json`` (package versions, task, classes, feature
schema, members, combiner, and the SHA-256 and size of every other file, all paths relative),
``manifest.sha256`` (the manifest's own digest), each fold's member folder as the member saves
itself (:meth:`ensemblex.members.Member.save`: LightGBM text, XGBoost JSON, CatBoost cbm,
skops, safetensors) and the combiner's state. Loading checks the manifest's digest first, then
every file's, refuses files the manifest does not list, paths that leave the folder and
symbolic links, and never unpickles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import numbers
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ensemblex.combiners import AutoCombiner, available_candidates
from ensemblex.combiners.persistence import combiner_state, load_combiner
from ensemblex.crossfit import (
    FULL,
    check_splits,
    crossfit,
    make_splits,
    member_outputs,
    refit_full,
)
from ensemblex.files import sha256_file, write_text_atomic
from ensemblex.labels import NESTED_CV
from ensemblex.members.base import MEMBER_FILE, Member, load_member, sharing_preprocessors
from ensemblex.members.prefitted import PrefittedMember
from ensemblex.members.zoo import resolve_members
from ensemblex.metrics import get_metric
from ensemblex.predictions import Predictions
from ensemblex.preprocessing import Schema, infer_schema, with_ranges
from ensemblex.store import RunStore
from ensemblex.tasks import encode_labels

FORMAT = "ensemblex-ensemble"
FORMAT_VERSION = 2  # 2: member folders, manifest digest, combiner state as JSON + npz
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"
MANIFEST_SIGNATURE = "manifest.sig"
SIGNING_KEY_ENV = "ENSEMBLEX_SIGNING_KEY"
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


@dataclass
class CrossFittedMember:
    """One member of a fitted ensemble: its fold models, whose mean is its prediction.

    Attributes
    ----------
    name : str
    columns : list of str
        The member's columns of the predictions array.
    folds : list of Member
        The fitted member of every cross-fitting fold.
    sources : list of Path, optional
        The run store's folder of every fold, when the folds were loaded from one: saving
        hard-links their files instead of writing copies.
    """

    name: str
    columns: list[str]
    folds: list[Member]
    sources: list[Path] | None = None  # the store folders the folds were loaded from

    @property
    def family(self) -> str:
        return self.folds[0].family

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Mean of the fold members' predictions, ``(n_samples, n_columns, n_outputs)``."""
        total = self.folds[0].predict(X)
        for fold in self.folds[1:]:
            total = total + fold.predict(X)
        return total / len(self.folds)

    def predict_folds(self, X: pd.DataFrame, encoded: dict | None = None) -> list[np.ndarray]:
        """Every fold member's predictions, ``(n_samples, n_columns, n_outputs)`` each;
        members with identical preprocessors share their encoded rows through ``encoded``
        (one dict per table ``X``)."""
        if encoded is None:
            return [fold.predict(X) for fold in self.folds]
        return [
            fold.predict_shared(X, encoded) if hasattr(fold, "predict_shared") else fold.predict(X)
            for fold in self.folds
        ]


class Ensemble(BaseEstimator):
    """What :class:`EnsembleRegressor` and :class:`EnsembleClassifier` share: cross-fitting,
    the combiner, member predictions, save and load. ``Ensemble.load`` loads either."""

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
        refit_full=False,
        views=None,
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
        self.refit_full = refit_full
        self.views = views

    # ------------------------------------------------------------ fit
    def fit(self, X, y, progress=None):
        """Cross-fit the members, fit the combiner on their OOF predictions.

        Parameters
        ----------
        X : DataFrame
            Features; strings are categorical, ID-like columns are left out of the tabular
            encodings with a warning (members of other families may still read them).
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
        X = self.schema_.check(X, source="X")  # mostly-numeric text columns become numbers
        self.schema_ = with_ranges(self.schema_, X)
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
        members = resolve_members(self.members, self.task_, self.random_state)
        _check_prefitted_classes(members, self.classes_)
        self.views_ = None
        if self.views is not None:
            from ensemblex.members.views import check_views, view_members

            # one zoo per view, each member seeing only its view's columns
            self.views_ = check_views(self.views, self.schema_.features)
            members = view_members(self.views_, members)
        splits = self._make_splits(codes if self._classifier else y)
        # rows that some split validates: with a predefined hold-out (members fitted on some
        # rows, the combiner on the others) the rest are training rows only
        covered = np.unique(np.concatenate([valid for _, valid in splits]))
        temporary = not self.work_dir
        root = Path(tempfile.mkdtemp(prefix="ensemblex-")) if temporary else Path(self.work_dir)
        fingerprint = {
            "data": _frame_hash(X, y),
            "members": [m.fingerprint() for m in members],
            "folds": _splits_fingerprint(self.cv, splits),
            "seed": self.random_state,
            "task": self.task_,
        }
        store = RunStore(root, fingerprint)
        start = time.perf_counter()
        P, seconds = crossfit(
            members,
            X,
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
        labels = self.classes_[codes] if self._classifier else codes
        if len(covered) < len(y):  # crossfit's predictions are of these rows only
            labels = labels[covered]
        self.oof_ = P
        self.combiner_ = self._make_combiner()
        self.oof_labels_ = labels
        # the training rows' features, for a combiner that reads them (dynamic selection,
        # routing, fusion); kept while the estimator lives, not saved
        self._fit_features = self.combiner_features(X.iloc[covered])
        start = time.perf_counter()
        if isinstance(self.combiner_, AutoCombiner) and progress is not None:

            def nested(name, done, total):
                progress(f"{NESTED_CV}: {name}", done, total + 1)

            self.combiner_.fit(P, labels, X=self._fit_features, progress=nested)
        else:
            self.combiner_.fit(P, labels, X=self._fit_features)
        self.combiner_seconds_ = time.perf_counter() - start
        self.fold_members_ = [
            CrossFittedMember(
                m.name,
                m.column_names(),
                [store.load_fold(m.name, k) for k in range(len(splits))],
                [store.fold_dir(m.name, k) for k in range(len(splits))],
            )
            for m in members
        ]
        # what is deployed: only the members the combiner uses, as their fold models or,
        # with refit_full, as one model refit on all rows
        used = set(np.asarray(self.member_names_)[self.combiner_.used_members()])
        deployed = [m for m in members if used.intersection(m.column_names())]
        self.refit_seconds_ = None
        if self.refit_full:
            self.refit_seconds_ = refit_full(
                deployed,
                X,
                codes,
                self.schema_,
                self.task_,
                store,
                classes=self.classes_,
                backend=self.backend,
                n_jobs=self.n_jobs,
                ray_address=self.ray_address,
                progress=progress,
            )
            self.fitted_members_ = [
                CrossFittedMember(
                    m.name,
                    m.column_names(),
                    [store.load_fold(m.name, FULL)],
                    [store.fold_dir(m.name, FULL)],
                )
                for m in deployed
            ]
        else:
            names = {m.name for m in deployed}
            self.fitted_members_ = [m for m in self.fold_members_ if m.name in names]
        # without a work_dir the fold files live in a temporary folder until this estimator
        # is garbage-collected, refitted or the interpreter exits
        previous = getattr(self, "_remove_temporary_folds", None)
        if previous is not None:
            previous()
        self._remove_temporary_folds = (
            weakref.finalize(self, shutil.rmtree, root, ignore_errors=True) if temporary else None
        )
        self.work_dir_ = root
        self.leaderboard_ = self._leaderboard(P, labels)
        return self

    def _make_splits(self, target: np.ndarray) -> list:
        """The cross-fitting splits: ``cv`` folds, or those of a splitter (such as
        scikit-learn's ``PredefinedSplit``: members fitted on fixed rows, the combiner on the
        rows they predict) or of a list of ``(train, valid)`` index pairs."""
        if isinstance(self.cv, numbers.Integral) and not isinstance(self.cv, bool):
            return make_splits(
                target, self.task_, int(self.cv), self.random_state, classes=self.classes_
            )
        if hasattr(self.cv, "split") and not isinstance(self.cv, str):
            splits = list(self.cv.split(np.zeros((len(target), 1)), target))
        elif isinstance(self.cv, list | tuple):
            splits = list(self.cv)
        else:
            raise ValueError(
                "cv must be a number of folds, a splitter with split() or a list of "
                f"(train, valid) index pairs, however: cv={self.cv!r}"
            )
        return check_splits(splits, len(target))

    def _nested_folds(self) -> int:
        """Outer folds of the combiner's nested CV: ``cv`` when it is a number of folds."""
        if isinstance(self.cv, numbers.Integral) and not isinstance(self.cv, bool):
            return int(self.cv)
        return 5

    def _make_combiner(self):
        if self.combiner == "auto" and self.oof_.output_kind == "gaussian":
            from ensemblex.combiners.mixture import MixtureWeights

            # Gaussian members: the mixture's weights and dispersion, fitted by CRPS
            return MixtureWeights(metric=self.metric_, random_state=self.random_state)
        if self.combiner == "auto":
            return AutoCombiner(
                metric=self.metric_, cv=self._nested_folds(), random_state=self.random_state
            )
        if isinstance(self.combiner, str):
            pool = available_candidates(self.metric_, self.random_state)
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
    def unusual_inputs(self, X) -> list[str]:
        """What in new rows the model never saw in training (entirely missing columns, unseen
        categories, values far outside the training range), one message per column."""
        self._check_fitted()
        return self.schema_.unusual_inputs(self.schema_.check(_as_frame(X), source="X"))

    def member_predictions(self, X) -> Predictions:
        """Every member's predictions on new rows: the mean of its fold models."""
        folds = self.member_fold_predictions(X)
        if len(folds) == 1:
            return folds[0]
        total = folds[0].values
        for P in folds[1:]:
            total = total + P.values
        return Predictions(
            total / len(folds),
            self.member_names_,
            self.task_,
            classes=self.classes_,
            outputs=folds[0].outputs,
            source="member predictions",
        )

    def member_fold_predictions(self, X) -> list[Predictions]:
        """The deployed members' predictions on new rows, one array per fold model.

        Fold ``k`` holds each member's fold-``k`` model (one array with ``refit_full``: the
        models refit on all rows). Members the combiner does not use are neither saved nor
        run: their columns hold a constant (uniform probabilities, or 0) that the combined
        output does not depend on.
        """
        self._check_fitted()
        X = self.schema_.check(_as_frame(X), source="X")
        return self._fold_predictions(self.fitted_members_, X)

    def crossfit_fold_predictions(self, X) -> list[Predictions]:
        """Every member's fold models' predictions on new rows, one array per fold, including
        members the deployed model leaves out: for scoring every member on held-out rows.
        Only right after ``fit`` (a saved model keeps what it deploys)."""
        self._check_fitted()
        members = getattr(self, "fold_members_", None)
        if members is None:
            raise ValueError(
                "a loaded ensemble keeps only the models it deploys; the fold models of every "
                "member are available on the estimator that was fitted"
            )
        X = self.schema_.check(_as_frame(X), source="X")
        return self._fold_predictions(members, X)

    def _fold_predictions(self, members: list[CrossFittedMember], X) -> list[Predictions]:
        encoded: dict = {}
        per_member = {m.name: m.predict_folds(X, encoded) for m in members}
        n_folds = len(members[0].folds)
        # regression members' outputs: None for a value, ("mean", "var") for Gaussians
        outputs = member_outputs([m.folds[0] for m in members], self.task_)
        n_outputs = len(self.classes_) if self.classes_ is not None else len(outputs or (0,))
        filler = 0.0 if self.classes_ is None else 1.0 / n_outputs
        values = np.full((n_folds, len(X), len(self.member_names_), n_outputs), filler)
        position = {name: j for j, name in enumerate(self.member_names_)}
        for m in members:
            columns = [position[c] for c in m.columns]
            for k, fold in enumerate(per_member[m.name]):
                values[k][:, columns] = fold
        return [
            Predictions(
                values[k],
                self.member_names_,
                self.task_,
                classes=self.classes_,
                outputs=outputs,
                source=f"member predictions, fold {k}",
            )
            for k in range(n_folds)
        ]

    def combiner_features(self, X) -> pd.DataFrame | None:
        """The feature columns of rows ``X`` as the combiner reads them (None for a combiner
        that reads only the members' predictions, or a table without feature columns): the
        schema's features, ID-like columns left out."""
        if self.combiner_.uses_features == "none" or not self.schema_.features:
            return None  # (a table whose only columns are text or IDs has no features here)
        return self._combiner_rows(self.schema_.check(_as_frame(X), source="X"))

    def _combiner_rows(self, checked: pd.DataFrame) -> pd.DataFrame | None:
        """:meth:`combiner_features` of rows the schema already checked."""
        if self.combiner_.uses_features == "none" or not self.schema_.features:
            return None
        return checked[self.schema_.features].reset_index(drop=True)

    def _predict_outputs(self, X) -> np.ndarray:
        # Fold-consistent: the combiner sees each fold model's predictions, as it saw the
        # out-of-fold ones at fit time, and the combined outputs are averaged.
        self._check_fitted()
        X = self.schema_.check(_as_frame(X), source="X")  # once, for members and combiner
        folds = self._fold_predictions(self.fitted_members_, X)
        return self.combiner_.predict_folds(folds, X=self._combiner_rows(X))

    def prediction_frame(self, X) -> pd.DataFrame:
        """Predictions as a table: ``prediction`` (a value or the most probable class), then
        for classification one probability column per class, ``proba_<class>``.

        The prefix says what a column holds, and keeps a class named ``prediction`` from
        clashing with that column.

        Parameters
        ----------
        X : DataFrame
            Rows with the training columns.

        Returns
        -------
        DataFrame
            ``prediction`` and, for classification, ``proba_<class>`` per class in
            ``classes_`` order.
        """
        return self.output_frame(self._predict_outputs(X))

    def output_frame(self, outputs: np.ndarray) -> pd.DataFrame:
        """The table of :meth:`prediction_frame` for combined outputs ``(n, n_outputs)``."""
        if self.classes_ is None:
            return pd.DataFrame({"prediction": outputs[:, 0]})
        frame = pd.DataFrame(outputs, columns=[f"proba_{c}" for c in self.classes_])
        frame.insert(0, "prediction", self.classes_[outputs.argmax(axis=1)])
        return frame

    def _check_fitted(self):
        if not hasattr(self, "combiner_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit or load first")

    # ------------------------------------------------------------ save / load
    def save(self, path, key: str | bytes | None = None) -> Path:
        """Save to a directory: written beside it, then swapped in, so that a complete model
        is on disk at every moment (the previous one until the new one is in place).

        Parameters
        ----------
        path : path
        key : str or bytes, optional
            Signing key (default: the ``ENSEMBLEX_SIGNING_KEY`` environment variable): adds
            ``manifest.sig``, an HMAC-SHA256 of the manifest's digest, which ``load`` with the
            same key requires. The digests alone detect damage; only a signature detects
            tampering by someone who can also rewrite them.
        """
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            self._write(tmp, _signing_key(key))
            _swap_in(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _write(self, folder: Path, key: bytes | None) -> None:
        members = []
        for m in self.fitted_members_:
            folds = []
            for k, fold in enumerate(m.folds):
                rel = f"members/{m.name}/fold{k}"
                source = m.sources[k] if m.sources else None
                if source is None or not _link_member(source, folder / rel):
                    fold.save(folder / rel)
                folds.append(rel)
            members.append(
                {"name": m.name, "family": m.family, "columns": m.columns, "folds": folds}
            )
        (folder / "combiner").mkdir()
        state, _ = combiner_state(self.combiner_, folder / "combiner")
        for sub in folder.rglob("*"):  # mkdtemp makes 0700 folders; files are 0644
            if sub.is_dir():
                sub.chmod(0o755)
        folder.chmod(0o755)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            # the estimator's own plain parameters (a combiner or members passed as objects
            # are in the files, not here; nested parameters would not rebuild it)
            "params": {
                k: v
                for k, v in self.get_params(deep=False).items()
                if isinstance(v, str | int | float | type(None)) or k == "views"
            },
            "versions": _versions(),
            "task": self.task_,
            "classes": None if self.classes_ is None else [_plain(c) for c in self.classes_],
            "metric": self.metric_.name,
            "schema": self.schema_.to_dict(),
            "member_columns": list(self.member_names_),
            "members": members,
            "combiner": state,
            "leaderboard": json.loads(self.leaderboard_.to_json(orient="records")),
            "files": {
                p.relative_to(folder).as_posix(): {
                    "sha256": sha256_file(p),
                    "size": p.stat().st_size,
                }
                for p in files
            },
        }
        text = json.dumps(manifest, indent=2, default=_plain)
        write_text_atomic(text, folder / MANIFEST)
        digest = hashlib.sha256(text.encode()).hexdigest()
        write_text_atomic(f"{digest}  {MANIFEST}\n", folder / MANIFEST_DIGEST)
        if key is not None:
            write_text_atomic(_signature(key, digest) + "\n", folder / MANIFEST_SIGNATURE)

    @classmethod
    def load(cls, path, key: str | bytes | None = None):
        """Load a saved ensemble; refuses changed, missing, foreign or outside files.

        With a signing ``key`` (default: the ``ENSEMBLEX_SIGNING_KEY`` environment variable)
        an unsigned or wrongly signed model is refused too.
        """
        path = Path(path)
        manifest = _read_manifest(path, _signing_key(key))
        try:
            return cls._from_manifest(path, manifest)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise ValueError(f"{path / MANIFEST}: malformed manifest ({detail})") from None

    @classmethod
    def _from_manifest(cls, path: Path, manifest: dict):
        estimators = {
            "EnsembleRegressor": EnsembleRegressor,
            "EnsembleClassifier": EnsembleClassifier,
        }
        target = estimators.get(manifest["estimator"])
        if target is None or (cls is not Ensemble and target is not cls):
            expected = cls.__name__ if cls is not Ensemble else list(estimators)
            raise ValueError(f"{path}: holds an {manifest['estimator']}, not an {expected}")
        _verify_files(path, manifest["files"])
        self = target(**manifest["params"])
        self.task_ = manifest["task"]
        self.classes_ = None if manifest["classes"] is None else np.asarray(manifest["classes"])
        self.metric_ = get_metric(manifest["metric"], self.task_)
        self.schema_ = Schema.from_dict(manifest["schema"])
        self.fitted_members_ = []
        with sharing_preprocessors():  # members refit on the same rows: one encoder
            for m in manifest["members"]:
                folds = [load_member(_inside(path, rel)) for rel in m["folds"]]
                for fold in folds:
                    if fold.column_names() != list(m["columns"]) or fold.task != self.task_:
                        raise ValueError(
                            f"{path}: member {m['name']!r} lists columns {m['columns']} for a "
                            f"{self.task_} task, however its fold models yield "
                            f"{fold.column_names()} ({fold.task})"
                        )
                self.fitted_members_.append(CrossFittedMember(m["name"], list(m["columns"]), folds))
        saved = [c for m in self.fitted_members_ for c in m.columns]
        # the combiner's columns; members it does not use are not saved (older models: all)
        self.member_names_ = list(manifest.get("member_columns", saved))
        if not all(isinstance(c, str) for c in self.member_names_) or (
            len(set(self.member_names_)) != len(self.member_names_)
            or not set(saved) <= set(self.member_names_)
        ):
            raise ValueError(
                f"{path}: member_columns must list distinct names including every saved "
                f"member's columns {saved}, however: {self.member_names_!r}"
            )
        n_folds = {len(m.folds) for m in self.fitted_members_}
        if len(n_folds) != 1:
            raise ValueError(
                f"{path}: every saved member must have the same number of fold models (at least "
                f"one member), however: {sorted(n_folds)}"
            )
        self.combiner_ = load_combiner(manifest["combiner"], path / "combiner")
        if list(self.combiner_.members_) != self.member_names_:
            raise ValueError(
                f"{path}: the combiner was fitted on members {list(self.combiner_.members_)}, "
                f"however the model lists {self.member_names_}"
            )
        self.leaderboard_ = pd.DataFrame(manifest["leaderboard"])
        return self


def _check_prefitted_classes(members, classes) -> None:
    for member in members:
        fitted = member.classes if isinstance(member, PrefittedMember) else None
        if (
            classes is not None
            and fitted is not None
            and [str(c) for c in fitted] != [str(c) for c in classes]
        ):
            raise ValueError(
                f"prefitted member {member.name!r} predicts classes "
                f"{np.asarray(fitted).tolist()}, however y has classes "
                f"{np.asarray(classes).tolist()}"
            )


def _link_member(source: Path, target: Path) -> bool:
    """Hard-link a saved member's files (``member.json`` and the files it lists) from the run
    store into ``target``, so a run folder holds its fold models once, not twice. False (and
    nothing left behind) when a store file no longer matches its digest (a link shares the
    file: one edited in place in a saved model changes the store's too) or links are
    impossible (another file system): the caller then writes the member anew."""
    try:
        meta = json.loads((source / MEMBER_FILE).read_text())
        # the store's record (done.json), written with the fold, not the member's own
        # member.json, which an in-place edit through a link could have rewritten too
        recorded = json.loads((source / "done.json").read_text())["sha256"]
        names = [MEMBER_FILE, *(str(rel) for rel in meta["files"])]
        target.mkdir(parents=True)
        for rel in names:
            file = _inside(source, rel)
            if file.is_symlink() or not file.is_file():
                raise ValueError(f"{file}: not a regular file")
            if sha256_file(file) != recorded[rel]:
                raise ValueError(f"{file}: changed since it was saved")
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(file, target / rel)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        shutil.rmtree(target, ignore_errors=True)
        return False
    return True


def _swap_in(new: Path, path: Path) -> None:
    """Move the folder ``new`` to ``path``; an existing ``path`` is renamed aside first and
    removed last, so a kill at any moment leaves a complete model on disk."""
    if not path.exists():
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.replace(path, old / "model")
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def _signing_key(key) -> bytes | None:
    """The key to sign or check with: ``key``, else the environment's; empty means none."""
    key = key if key is not None else os.environ.get(SIGNING_KEY_ENV)
    if not key:
        return None
    return key.encode() if isinstance(key, str) else bytes(key)


def _signature(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def _read_manifest(path: Path, key: bytes | None = None) -> dict:
    file = path / MANIFEST
    if not file.is_file() or file.is_symlink():
        raise ValueError(f"{path}: no {MANIFEST}; not a saved ensemblex ensemble")
    digest_file = path / MANIFEST_DIGEST
    if not digest_file.is_file() or digest_file.is_symlink():
        raise ValueError(f"{path}: no {MANIFEST_DIGEST}; cannot verify the manifest")
    raw = file.read_bytes()
    expected = digest_file.read_text(errors="replace").split()
    if not expected or hashlib.sha256(raw).hexdigest() != expected[0]:
        raise ValueError(
            f"{file}: does not match {MANIFEST_DIGEST} (changed or damaged); refusing to load"
        )
    if key is not None:
        sig_file = path / MANIFEST_SIGNATURE
        if not sig_file.is_file() or sig_file.is_symlink():
            raise ValueError(f"{path}: not signed ({MANIFEST_SIGNATURE} missing); refusing")
        found = sig_file.read_text(errors="replace").strip()
        if not hmac.compare_digest(found, _signature(key, expected[0])):
            raise ValueError(f"{path}: wrong signature for this key; refusing to load")
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{file}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{file}: format version {manifest.get('format_version')!r}; this ensemblex reads "
            f"version {FORMAT_VERSION} (save the model again with this version)"
        )
    return manifest


def _inside(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative, normalised path that stays inside ``root``."""
    if not isinstance(rel, str):
        raise ValueError(f"{root}: manifest path must be a string, however: {rel!r}")
    posix = PurePosixPath(rel)
    if posix.is_absolute() or ".." in posix.parts or "\\" in rel or str(posix) != rel or not rel:
        raise ValueError(f"{root}: manifest path {rel!r} is not a relative path inside the folder")
    return root / posix


def _verify_files(path: Path, listed: dict) -> None:
    if not isinstance(listed, dict):
        raise ValueError(f"{path}: malformed manifest (files must be a mapping)")
    for sub in path.rglob("*"):
        if sub.is_symlink():
            raise ValueError(f"{path}: refuses to load: {sub.relative_to(path)} is a symbolic link")
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    present -= {MANIFEST, MANIFEST_DIGEST, MANIFEST_SIGNATURE}
    foreign = sorted(present - set(listed))
    if foreign:
        raise ValueError(f"{path}: refuses to load: files not listed in the manifest {foreign}")
    for rel, entry in listed.items():
        file = _inside(path, rel)
        if not file.is_file():
            raise ValueError(f"{path}: file {rel} listed in the manifest is missing")
        if file.stat().st_size != entry["size"] or sha256_file(file) != entry["sha256"]:
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


def _splits_fingerprint(cv, splits: list):
    """The folds as the run store records them: their number, or a digest of the rows of
    each given split (a changed hold-out means a new run)."""
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        return int(cv)
    h = hashlib.sha256()
    for train, valid in splits:
        h.update(np.asarray(train, dtype=np.int64).tobytes() + b"|")
        h.update(np.asarray(valid, dtype=np.int64).tobytes() + b"/")
    return f"splits:{len(splits)}:{h.hexdigest()[:16]}"


def _frame_hash(X: pd.DataFrame, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(X, index=False).to_numpy().tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(y), index=False).to_numpy().tobytes())
    h.update(json.dumps([str(c) for c in X.columns]).encode())
    return h.hexdigest()


class EnsembleRegressor(RegressorMixin, Ensemble):
    """Cross-fitted zoo plus a combiner chosen by nested CV, for regression.

    Parameters
    ----------
    members : "default", "fast" or list
        A zoo name, or estimators, ``(name, estimator)`` pairs or members
        (:class:`ensemblex.members.Member`, e.g. :func:`ensemblex.members.prefitted`).
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
    refit_full : bool, default False
        Deploy each member the combiner uses as one model refit on all rows.
    views : dict of str to list of str, optional
        Multi-view members: the zoo is fitted once per view (a named set of feature
        columns), members named ``view/member``, all combined together.

    Attributes
    ----------
    leaderboard_ : DataFrame
        Every member (OOF score, seconds) and every combiner candidate (nested-CV score).
    combiner_, oof_, schema_, member_names_
    """

    _classifier = False

    def predict(self, X) -> np.ndarray:
        """Predicted values, shape (n_samples,): the mixture's mean for Gaussian members."""
        return self._predict_outputs(X)[:, 0]

    def predict_distribution(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the predicted distribution, ``(n_samples,)`` each.

        Needs members that predict a Gaussian (outputs ``("mean", "var")``) and a combiner
        that mixes them: :class:`~ensemblex.combiners.mixture.MixtureWeights` (the default
        for such members), or one that is a weight vector (its weights then mix the members'
        Gaussians, each fold model's mixture averaged as ``MixtureWeights`` does).
        """
        from ensemblex.combiners.base import mixture_weights
        from ensemblex.combiners.mixture import MixtureWeights
        from ensemblex.metrics.probabilistic import mixture_moments

        folds = self.member_fold_predictions(X)
        if folds[0].output_kind != "gaussian":
            raise ValueError(
                "predict_distribution needs members that predict a Gaussian, outputs "
                f"('mean', 'var'), however: outputs={folds[0].outputs!r}"
            )
        if isinstance(self.combiner_, MixtureWeights):
            out = self.combiner_.predict_folds(folds)
            return out[:, 0], out[:, 1]
        weights = mixture_weights(self.combiner_)
        if weights is None:
            raise ValueError(
                "predict_distribution needs a combiner that mixes the members (MixtureWeights "
                f"or a weight vector), however: combiner={type(self.combiner_).__name__}"
            )
        moments = [
            mixture_moments(P.values[:, :, 0], np.maximum(P.values[:, :, 1], 1e-300), weights)
            for P in folds
        ]
        mean = np.mean([m for m, _ in moments], axis=0)
        return mean, np.mean([v for _, v in moments], axis=0)


class EnsembleClassifier(ClassifierMixin, Ensemble):
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
