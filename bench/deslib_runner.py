"""DESlib's dynamic selection on saved predictions: the reference side of ``deslib_check.py``.

    /work/deslibvenv/bin/python bench/deslib_runner.py POOL.npz OUT.npz [K]

Runs inside the DESlib environment (python 3.11, deslib 0.3.7, scikit-learn 1.5.2) and
imports only numpy, scikit-learn and deslib. ``POOL.npz`` holds the DSEL features
``X_dsel`` (n_dsel, d), the DSEL labels ``y_dsel`` (codes 0..K-1), the members'
out-of-fold probabilities ``P_dsel`` (n_dsel, m, K), and the same for the test rows
(``X_test``, ``P_test``). Each member is wrapped as a fitted estimator that answers with
the saved predictions of the rows it is given, so DESlib's methods run on exactly the
predictions ensemblex combines. ``OUT.npz`` gets, per method and voting rule,
``<name>__proba`` (DESlib's ``predict_proba``), ``<name>__label`` (its ``predict``),
``<name>__seconds`` (the fastest of 5 calls), and ``neighbours``:
DESlib's k nearest DSEL rows of every test row (the first method's region of competence).
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from deslib.dcs import LCA, OLA
from deslib.des import DESP, KNOP, KNORAE, KNORAU, METADES
from sklearn.base import BaseEstimator, ClassifierMixin


class SavedPredictions(ClassifierMixin, BaseEstimator):
    """A "fitted" member that returns saved probabilities of the rows it is asked about.

    It knows two matrices (DSEL and test) and their probabilities; a whole matrix is
    recognised with ``np.array_equal``, a subset of rows by looking each row up. A row it
    has not seen raises, so DESlib cannot silently get wrong predictions.
    """

    def __init__(self, tables):
        self.tables = tables  # list of (X, proba)
        self.classes_ = np.arange(tables[0][1].shape[1])
        self._rows = {}
        for X, proba in tables:
            for i, row in enumerate(X):
                self._rows.setdefault(row.tobytes(), proba[i])

    def fit(self, X=None, y=None):
        return self  # already "fitted": its predictions are saved

    def predict_proba(self, X):
        X = np.ascontiguousarray(X, dtype=np.float64)
        for known, proba in self.tables:
            if X.shape == known.shape and np.array_equal(X, known):
                return proba
        try:
            return np.stack([self._rows[row.tobytes()] for row in X])
        except KeyError:
            raise ValueError("SavedPredictions was asked about a row it never saw") from None

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def methods(pool, k: int, voting: str) -> dict:
    """DESlib's methods with their default settings but the voting rule (DCS has none)."""
    common = dict(pool_classifiers=pool, k=k, random_state=0, n_jobs=1)
    out = {
        "knora_e": KNORAE(voting=voting, **common),
        "knora_u": KNORAU(voting=voting, **common),
        "des_p": DESP(voting=voting, **common),
        "knop": KNOP(voting=voting, **common),
        "meta_des": METADES(voting=voting, **common),
    }
    if voting == "hard":  # OLA and LCA choose one member: no voting rule
        out.update(ola=OLA(**common), lca=LCA(**common))
    return out


def main(pool_path: str, out_path: str, k: int = 7, repeats: int = 5) -> None:
    data = np.load(pool_path)
    X_dsel, y_dsel, P_dsel = data["X_dsel"], data["y_dsel"], data["P_dsel"]
    X_test, P_test = data["X_test"], data["P_test"]
    n_members = P_dsel.shape[1]
    pool = [
        SavedPredictions([(X_dsel, P_dsel[:, j]), (X_test, P_test[:, j])]) for j in range(n_members)
    ]
    out = {}
    for voting in ("hard", "soft"):
        for name, ds in methods(pool, k, voting).items():
            key = f"{name}__{voting}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # KNORA-U's 0/0 rows
                ds.fit(X_dsel, y_dsel)
                seconds = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    proba = ds.predict_proba(X_test)
                    seconds.append(time.perf_counter() - start)
                start = time.perf_counter()
                label = ds.predict(X_test)
                label_seconds = time.perf_counter() - start
            out[f"{key}__proba"] = proba
            out[f"{key}__label"] = label
            out[f"{key}__seconds"] = np.array(min(seconds))
            out[f"{key}__label_seconds"] = np.array(label_seconds)
            if "neighbours" not in out:
                out["neighbours"] = ds.get_competence_region(X_test)[1]
            print(f"{key}: predict_proba {min(seconds):.3f} s", flush=True)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:4]))
