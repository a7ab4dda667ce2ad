"""Pseudo-labelling: the threshold rule against brute force, pseudo rows kept out of every
validation fold, the stopping rule, an oracle member, reproducibility, and errors."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ensemblex.crossfit import make_splits
from ensemblex.members import FAMILIES, Member
from ensemblex.members.base import one_column
from ensemblex.pseudo_labels import (
    PseudoLabeler,
    class_thresholds,
    precision_threshold,
    select_confident,
)


# ---------------------------------------------------------------- a member that tells
class Spy(Member):
    """A logistic regression on columns ``a``, ``b`` (or, as an oracle, the probability of
    class 1 read from column ``p1``) that records the ``id`` of every row it was fitted on."""

    family = "pl_spy"
    FITS: ClassVar[list] = []  # (ids, labels) of every fit, in order

    def __init__(self, name="spy", oracle=False):
        super().__init__(name)
        self.oracle = oracle
        self.ids_, self.coef_ = None, None

    def fit(self, X, y, context):
        fitted = Spy(self.name, self.oracle)
        fitted.task = context.task
        fitted.ids_ = X["id"].to_numpy().tolist()
        Spy.FITS.append((X["id"].to_numpy(), np.asarray(y)))
        if not self.oracle:
            model = LogisticRegression(C=1.0).fit(X[["a", "b"]].to_numpy(), y)
            fitted.coef_ = [*model.coef_[0].tolist(), float(model.intercept_[0])]
        return fitted

    def predict(self, X):
        if self.oracle:
            p1 = X["p1"].to_numpy(dtype=float)
        else:
            w = np.asarray(self.coef_)
            p1 = 1.0 / (1.0 + np.exp(-(X[["a", "b"]].to_numpy() @ w[:2] + w[2])))
        return one_column(np.stack([1 - p1, p1], axis=1), self.task)

    def save_files(self, folder):
        return {"oracle": self.oracle, "ids": self.ids_, "coef": self.coef_}

    @classmethod
    def load_files(cls, folder, name, task, settings):
        member = cls(name, settings["oracle"])
        member.ids_, member.coef_ = settings["ids"], settings["coef"]
        return member


@pytest.fixture(autouse=True)
def spy_family(monkeypatch):
    monkeypatch.setitem(FAMILIES, Spy.family, f"{__name__}:Spy")
    Spy.FITS.clear()


def blobs(n=400, labelled=40, seed=0):
    """Two Gaussian blobs; the first ``labelled`` rows (both classes) keep their labels."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n - n // 2, int)]
    centre = np.where(y[:, None] == 1, 1.2, -1.2)
    X = pd.DataFrame(rng.normal(size=(n, 2)) + centre, columns=["a", "b"])
    X.insert(0, "id", np.arange(n))
    order = rng.permutation(n)
    first = np.r_[order[y[order] == 0][: labelled // 2], order[y[order] == 1][: labelled // 2]]
    rest = np.setdiff1d(np.arange(n), first)
    return X.iloc[first], y[first], X.iloc[rest], y[rest]


def labeler(**kw):
    params = dict(members=[Spy()], combiner="mean", cv=4, n_jobs=1, target_precision=0.95)
    return PseudoLabeler(**{**params, **kw})


# ---------------------------------------------------------------- the threshold rule
def brute_threshold(confidence, correct, target):
    """The lowest observed confidence whose rows at or above it reach the target."""
    best = math.inf
    for t in confidence:
        above = confidence >= t
        if correct[above].mean() >= target:
            best = min(best, t)
    return best


def test_threshold_is_the_lowest_one_reaching_the_precision_by_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 40))
        # rounded confidences make ties, which a threshold selects together
        confidence = np.round(rng.uniform(0.5, 1.0, n), 1 + trial % 3)
        correct = rng.uniform(size=n) < confidence
        target = float(rng.choice([0.5, 0.8, 0.9, 0.99, 1.0]))
        assert precision_threshold(confidence, correct, target) == brute_threshold(
            confidence, correct, target
        )
    assert precision_threshold(np.array([]), np.array([], bool), 0.9) == math.inf


def test_per_class_thresholds_reach_the_precision_within_each_predicted_class():
    rng = np.random.default_rng(4)
    proba = rng.dirichlet([1, 1, 1], size=300)
    codes = np.where(rng.uniform(size=300) < proba.max(1), proba.argmax(1), rng.integers(0, 3, 300))
    per_class = class_thresholds(proba, codes, 0.8, "per_class")
    predicted, confidence = proba.argmax(1), proba.max(1)
    for c in range(3):
        mine = predicted == c
        expected = brute_threshold(confidence[mine], codes[mine] == c, 0.8)
        assert per_class[c] == expected
    overall = brute_threshold(confidence, predicted == codes, 0.8)
    np.testing.assert_array_equal(class_thresholds(proba, codes, 0.8, "global"), [overall] * 3)


def test_selection_caps_rows_and_keeps_class_shares_by_brute_force():
    rng = np.random.default_rng(5)
    proba = rng.dirichlet([1, 1, 1], size=500)
    thresholds = np.array([0.5, 0.6, 0.45])
    available = rng.uniform(size=500) < 0.8
    predicted, confidence = proba.argmax(1), proba.max(1)
    eligible = [i for i in range(500) if available[i] and confidence[i] >= thresholds[predicted[i]]]
    eligible.sort(key=lambda i: -confidence[i])
    rows, codes = select_confident(proba, thresholds, available, 30)
    assert rows.tolist() == eligible[:30] and codes.tolist() == predicted[eligible[:30]].tolist()
    prior = np.array([0.5, 0.3, 0.2])
    rows, codes = select_confident(proba, thresholds, available, 10_000, prior)
    counts = np.bincount(predicted[eligible], minlength=3)
    total = int(np.floor(min(counts / prior)))
    for c in range(3):
        of_c = [i for i in eligible if predicted[i] == c][: int(np.floor(total * prior[c]))]
        assert sorted(rows[codes == c].tolist()) == sorted(of_c)


# ---------------------------------------------------------------- the rounds
def test_pseudo_rows_train_but_never_validate_and_the_kept_round_is_the_best():
    X, y, X_u, y_u = blobs()
    model = labeler(max_rounds=3).fit(X, y, X_u, y_unlabelled_true=y_u)
    labelled, unlabelled = set(X["id"]), set(X_u["id"])
    splits = make_splits(y, "binary", 4, 0)
    folds = [(set(X["id"].iloc[tr]), set(X["id"].iloc[va])) for tr, va in splits]
    n_rounds = len(model.history_)
    assert len(Spy.FITS) == 4 * n_rounds
    for i, (ids, _) in enumerate(Spy.FITS):
        train, valid = folds[i % 4]
        mine = set(ids.tolist())
        # a fold trains on its own labelled training rows and unlabelled ones, never on a
        # labelled row it validates
        assert mine & labelled == train and not mine & valid
        assert mine - labelled <= unlabelled
    # the kept ensemble's fold k trained on fold k's rows plus its own pseudo rows, labelled
    # as recorded
    history = model.history_
    best = int(history["oof_log_loss"].idxmin())
    assert model.best_round_ == best and best >= 1  # the blobs gain from unlabelled rows
    assert (np.diff(history["oof_log_loss"].to_numpy()[: best + 1]) < 0).all()
    assert n_rounds == 4 or history["oof_log_loss"].iloc[-1] >= history["oof_log_loss"].min()
    for k, fold in enumerate(model.ensemble_.fold_members_[0].folds):
        pseudo_ids = X_u["id"].to_numpy()[model.pseudo_rows_[k]]
        assert sorted(fold.ids_) == sorted([*folds[k][0], *pseudo_ids.tolist()])
    # the labels of a fold's pseudo rows are what its models were given
    start = 4 * best
    for k in range(4):
        ids, labels = Spy.FITS[start + k]
        given = dict(zip(ids.tolist(), labels.tolist()))
        pseudo_ids = X_u["id"].to_numpy()[model.pseudo_rows_[k]]
        assert [given[i] for i in pseudo_ids] == model.pseudo_labels_[k].tolist()
    accuracy = np.mean(
        np.concatenate(model.pseudo_labels_) == y_u[np.concatenate(model.pseudo_rows_)]
    )
    assert history["pseudo_accuracy"].iloc[best] == pytest.approx(accuracy)


def test_an_oracle_labels_exactly_its_confident_rows_correctly_then_stops():
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 2, n)
    easy = rng.uniform(size=n) < 0.7
    # easy rows: the right class at 0.97; hard rows: the wrong class at 0.6
    p1 = np.where(easy, np.where(y == 1, 0.97, 0.03), np.where(y == 1, 0.4, 0.6))
    X = pd.DataFrame({"id": np.arange(n), "p1": p1})
    lab = np.r_[np.flatnonzero(y == 0)[:20], np.flatnonzero(y == 1)[:20]]
    unl = np.setdiff1d(np.arange(n), lab)
    model = PseudoLabeler(
        [Spy("oracle", oracle=True)],
        combiner="mean",
        cv=4,
        n_jobs=1,
        max_share=1.0,
        max_rounds=5,
        class_balance=False,
    ).fit(X.iloc[lab], y[lab], X.iloc[unl], y_unlabelled_true=y[unl])
    history = model.history_
    assert history["threshold"].iloc[0] == [None, None]
    assert history["threshold"].iloc[1] == [0.97, 0.97]
    assert history["added"].iloc[1] == easy[unl].sum()
    assert history["pseudo_accuracy"].iloc[1] == 1.0
    # the oracle's predictions do not change with its training rows: no gain, round 0 kept
    assert len(history) == 2 and model.best_round_ == 0
    assert all(len(rows) == 0 for rows in model.pseudo_rows_)
    fits = Spy.FITS[4:]
    for ids, labels in fits:
        pseudo = ids[np.isin(ids, unl)]
        assert set(pseudo.tolist()) == set(unl[easy[unl]].tolist())
        np.testing.assert_array_equal(labels[np.isin(ids, unl)], y[pseudo])


def test_same_seed_same_numbers_and_true_labels_never_reach_a_fit():
    X, y, X_u, y_u = blobs(seed=2)
    first = labeler(max_rounds=2, random_state=7).fit(X, y, X_u, y_unlabelled_true=y_u)
    shuffled = np.random.default_rng(0).permutation(y_u)
    second = labeler(max_rounds=2, random_state=7).fit(X, y, X_u, y_unlabelled_true=shuffled)
    third = labeler(max_rounds=2, random_state=7).fit(X, y, X_u)
    grid = pd.DataFrame({"id": [-1, -2, -3], "a": [-1.0, 0.1, 1.0], "b": [0.5, 0.0, -0.2]})
    expected = first.predict_proba(grid)
    for other in (second, third):
        np.testing.assert_array_equal(other.predict_proba(grid), expected)
        for a, b in zip(other.pseudo_rows_, first.pseudo_rows_):
            np.testing.assert_array_equal(a, b)
        columns = ["oof_log_loss", "oof_accuracy", "added"]
        pd.testing.assert_frame_equal(other.history_[columns], first.history_[columns])
    assert third.history_["pseudo_accuracy"].isna().all()
    assert first.best_round_ >= 1
    assert first.history_["pseudo_accuracy"].iloc[1] != second.history_["pseudo_accuracy"].iloc[1]


def test_patience_waits_that_many_rounds_without_gain():
    X, y, X_u, _ = blobs(seed=4)
    # no round can lower the loss by 1.0: round 0 is kept, after `patience` more rounds
    for patience in (1, 2):
        model = labeler(max_rounds=5, min_gain=1.0, patience=patience).fit(X, y, X_u)
        assert len(model.history_) == 1 + patience and model.best_round_ == 0
        assert (model.history_["added"].iloc[1:] > 0).all()
        assert all(len(rows) == 0 for rows in model.pseudo_rows_)


def test_the_kept_ensemble_saves_and_loads_as_an_ensemble_classifier(tmp_path):
    from ensemblex.ensemble import EnsembleClassifier

    X, y, X_u, _ = blobs(seed=5)
    model = labeler(max_rounds=1).fit(X, y, X_u)
    loaded = EnsembleClassifier.load(model.ensemble_.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_proba(X_u), model.predict_proba(X_u))


def test_max_rounds_zero_is_the_plain_ensemble():
    X, y, X_u, _ = blobs(seed=3)
    model = labeler(max_rounds=0).fit(X, y, X_u)
    assert len(model.history_) == 1 and model.best_round_ == 0
    assert len(Spy.FITS) == 4 and all(len(ids) < len(X) for ids, _ in Spy.FITS)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_precision": 0.0}, r"target_precision must be a number in \(0, 1\], however"),
        ({"max_share": 1.5}, r"max_share must be a number in \(0, 1\], however: max_share=1.5"),
        ({"thresholds": "median"}, r"thresholds must be one of \('global', 'per_class'\)"),
        ({"max_rounds": -1}, r"max_rounds must be an integer >= 0, however: max_rounds=-1"),
        ({"cv": 1}, r"cv must be an integer >= 2, however: cv=1"),
        ({"patience": 0}, r"patience must be an integer >= 1, however: patience=0"),
    ],
)
def test_bad_parameters_are_named(params, message):
    X, y, X_u, _ = blobs(n=80, labelled=20)
    with pytest.raises(ValueError, match=message):
        labeler(**params).fit(X, y, X_u)


def test_bad_data_is_refused_clearly():
    X, y, X_u, y_u = blobs(n=80, labelled=20)
    with pytest.raises(ValueError, match="X_unlabelled must hold at least one row"):
        labeler().fit(X, y, X_u.iloc[:0])
    with pytest.raises(ValueError, match=r"y must hold class labels.*regression"):
        labeler().fit(X, y + np.linspace(0.1, 0.2, len(y)), X_u)
    with pytest.raises(ValueError, match=r"X_unlabelled must have the columns of X.*\['b'\]"):
        labeler().fit(X, y, X_u.drop(columns="b"))
    with pytest.raises(ValueError, match=r"y_unlabelled_true must have shape \(60,\)"):
        labeler().fit(X, y, X_u, y_unlabelled_true=y_u[:5])
    with pytest.raises(TypeError, match="X_unlabelled must be a pandas DataFrame"):
        labeler().fit(X, y, X_u.to_numpy())
    with pytest.raises(RuntimeError, match="not fitted"):
        labeler().predict(X)
    assert not Spy.FITS  # refused before any fit
