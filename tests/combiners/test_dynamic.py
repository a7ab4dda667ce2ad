"""Dynamic selection: every method against a brute-force per-sample reference written from
DESlib's definitions, hand-made cases for KNORA-E's shrinking neighbourhood and for ties,
state round trips and the checks at the door. (Equality with DESlib itself on a real pool
is bench/deslib_check.py's job: DESlib lives in its own environment.)"""

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from ensemblex import Predictions
from ensemblex.combiners import Combiner
from ensemblex.combiners.dynamic import (
    DESP,
    KNOP,
    KNORAE,
    KNORAU,
    LCA,
    METADES,
    OLA,
    candidates,
)
from ensemblex.combiners.features import encode_features, fit_feature_encoding

METHODS = {
    "ola": OLA,
    "lca": LCA,
    "knora_e": KNORAE,
    "knora_u": KNORAU,
    "des_p": DESP,
    "knop": KNOP,
    "meta_des": METADES,
}
VOTING = ("knora_e", "knora_u", "des_p", "knop", "meta_des")


# ---------------------------------------------------------------- a small real pool
class Pool:
    """OOF predictions (the DSEL) and test predictions of a few weak, diverse members."""

    def __init__(self, X, y, task, n_rows):
        X, y = X[:n_rows], y[:n_rows]
        X_tr, X_te, y_tr, _ = train_test_split(X, y, test_size=0.4, random_state=0, stratify=y)
        members = [
            make_pipeline(StandardScaler(), LogisticRegression(C=0.01)),
            GaussianNB(),
            DecisionTreeClassifier(max_depth=2, random_state=0),
            make_pipeline(StandardScaler(), KNeighborsClassifier(3)),
            DecisionTreeClassifier(max_depth=4, max_features=2, random_state=1),
        ]
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        oof = [cross_val_predict(m, X_tr, y_tr, cv=cv, method="predict_proba") for m in members]
        test = [m.fit(X_tr, y_tr).predict_proba(X_te) for m in members]
        names = [f"m{j}" for j in range(len(members))]
        classes = np.unique(y)
        self.oof = Predictions(np.stack(oof, axis=1), names, task, classes=classes)
        self.test = Predictions(np.stack(test, axis=1), names, task, classes=classes)
        self.X, self.y, self.X_test = X_tr, y_tr, X_te


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return Pool(X, y, "multiclass", len(y))


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return Pool(X, y, "binary", 250)


@pytest.fixture(params=["wine", "cancer"])
def pool(request):
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------- the reference, per sample
def _nearest(points, point, k):
    return np.argsort(((points - point) ** 2).sum(axis=1), kind="stable")[:k]


def _profile(p):
    """A row's output profile (m, K) -> vector; binary keeps the first class (DESlib)."""
    return p[:, 0] if p.shape[1] == 2 else p.ravel()


def _combine(p, weights, voting):
    """Selected/weighted members of one row (m, K) -> (K,), written out per member."""
    weights = np.asarray(weights, dtype=float)
    if weights.sum() == 0:
        weights = np.ones(len(weights))
    out = np.zeros(p.shape[1])
    for j, w in enumerate(weights):
        if voting == "soft":
            out += w * p[j]
        else:
            out[np.argmax(p[j])] += w
    return out / weights.sum()


class Reference:
    """DESlib's rules, one query row at a time, on the DSEL as the combiners store it
    (features encoded, then float32; probabilities float32)."""

    def __init__(self, pool: Pool, k=7, kp=5, hc=1.0, threshold=0.5):
        self.encoding = fit_feature_encoding(pool.X)
        self.Xd = encode_features(self.encoding, pool.X).astype(np.float32).astype(float)
        self.Pd = pool.oof.values.astype(np.float32).astype(float)
        self.yd = np.searchsorted(pool.oof.classes, pool.y)
        self.correct = self.Pd.argmax(axis=2) == self.yd[:, None]
        self.k, self.kp, self.threshold = k, kp, threshold
        self.profiles = np.stack([_profile(p) for p in self.Pd])
        self.meta_model = self._fit_meta_classifier(hc)

    def row(self, method, x, p, voting="soft"):
        predicted = p.argmax(axis=1)
        if np.all(predicted == predicted[0]):
            return p.mean(axis=0)
        m, n_classes = p.shape
        if method == "knop":
            nb = _nearest(self.profiles, _profile(p), self.k)
        else:
            nb = _nearest(self.Xd, x, self.k)
        right = self.correct[nb]  # (k, m)
        if method in ("ola", "lca"):
            if method == "ola":
                competence = right.mean(axis=0)
            else:
                competence = np.zeros(m)
                for j in range(m):
                    same = self.yd[nb] == predicted[j]
                    competence[j] = right[same, j].mean() if same.any() else 0.0
            best = max(range(m), key=lambda j: (competence[j], -j))  # ties: lowest index
            return p[best]
        if method == "knora_e":
            selected = np.ones(m, dtype=bool)  # nobody right on the nearest: whole pool
            for size in range(self.k, 0, -1):
                oracles = right[:size].all(axis=0)
                if oracles.any():
                    selected = oracles
                    break
            return _combine(p, selected, voting)
        if method in ("knora_u", "knop"):
            return _combine(p, right.sum(axis=0), voting)
        if method == "des_p":
            selected = right.mean(axis=0) - 1.0 / n_classes > 0
            return _combine(p, selected if selected.any() else np.ones(m), voting)
        competence = self.meta_model.predict_proba(self._meta_features(x, p, self.k, self.kp))[
            :, list(self.meta_model.classes_).index(True)
        ]
        selected = competence > self.threshold
        return _combine(p, selected if selected.any() else np.ones(m), voting)

    def predict(self, method, X, P, voting="soft"):
        X = encode_features(self.encoding, X)
        return np.stack([self.row(method, x, p, voting) for x, p in zip(X, P.values)])

    def _meta_features(self, x, p, k, kp, skip_first=False):
        """One row's meta-feature vectors, one per member, digitised as DESlib does."""
        start = 1 if skip_first else 0
        nb = _nearest(self.Xd, x, k + start)[start:]
        op = _nearest(self.profiles, _profile(p), kp + start)[start:]
        vectors = []
        for j in range(p.shape[0]):
            f1 = self.correct[nb, j]
            f2 = np.array([self.Pd[i, j, self.yd[i]] for i in nb])
            f4 = self.correct[op, j]
            vectors.append(np.concatenate([f1, f2, [f1.mean()], f4, [p[j].max()]]))
        return np.digitize(np.array(vectors, dtype=float), np.linspace(0.1, 1, 10))

    def _fit_meta_classifier(self, hc):
        share = self.correct.mean(axis=1)
        design, target = [], []
        for i in range(len(self.Xd)):
            if hc > share[i] or share[i] > 1 - hc:
                design.append(self._meta_features(self.Xd[i], self.Pd[i], self.k, self.kp, True))
                target.extend(self.correct[i])
        return MultinomialNB().fit(np.concatenate(design), np.array(target))


# ---------------------------------------------------------------- against the reference
@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_matches_the_per_sample_reference(pool, method):
    reference = Reference(pool)
    for voting in ("soft", "hard") if method in VOTING else ("soft",):
        params = {"voting": voting} if method in VOTING else {}
        combiner = METHODS[method](**params).fit(pool.oof, pool.y, X=pool.X)
        X = None if method == "knop" else pool.X_test
        ours = combiner.predict(pool.test, X=X)
        expected = reference.predict(method, pool.X_test, pool.test, voting)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12, err_msg=voting)
        # on the DSEL rows themselves too (neighbours include the row: honest OOF rows)
        expected = reference.predict(method, pool.X, pool.oof, voting)
        ours = combiner.predict(pool.oof, X=None if method == "knop" else pool.X)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12, err_msg=voting)


def test_the_pool_exercises_selection(wine):
    # the reference comparison means something only if members disagree and selections vary
    predicted = wine.test.values.argmax(axis=2)
    disagree = ~(predicted == predicted[:, :1]).all(axis=1)
    assert 0.2 < disagree.mean() < 0.9
    ours = KNORAE().fit(wine.oof, wine.y, X=wine.X).predict(wine.test, X=wine.X_test)
    mean = wine.test.values.mean(axis=1)
    assert not np.allclose(ours[disagree], mean[disagree], atol=1e-3)


def test_meta_des_competence_is_sklearns_multinomial_nb(wine):
    reference = Reference(wine)
    meta = METADES().fit(wine.oof, wine.y, X=wine.X)
    nb = reference.meta_model
    np.testing.assert_allclose(meta.meta_feature_log_prob_, nb.feature_log_prob_, rtol=1e-12)
    np.testing.assert_allclose(meta.meta_class_log_prior_, nb.class_log_prior_, rtol=1e-12)
    X = encode_features(meta.feature_encoding_, wine.X_test)
    ours = meta.competence(wine.test.values, X)
    expected = np.stack(
        [
            nb.predict_proba(reference._meta_features(x, p, 7, 5))[:, 1]
            for x, p in zip(X, wine.test.values)
        ]
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- hand-made cases
def _line_case(correct: np.ndarray, query_proba: np.ndarray):
    """DSEL rows at x = 1, 2, 3, ... (so neighbours of x = 0 come in order), all of class 0,
    with member j right on row i where ``correct[i, j]``; a query at x = 0."""
    n, m = correct.shape
    proba = np.where(correct[:, :, None], [0.8, 0.2], [0.3, 0.7])  # (n, m, 2)
    X = np.arange(1.0, n + 1)[:, None]
    P = Predictions(proba, [f"m{j}" for j in range(m)], "binary", classes=np.array([0, 1]))
    query = Predictions(query_proba[None], P.members, "binary", classes=P.classes)
    return P, np.zeros(n, dtype=int), X, query, np.array([[0.0]])


QUERY = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])  # members 0 and 2 say 0, member 1 says 1


def test_knora_e_shrinks_the_neighbourhood_until_a_member_is_right_on_all_of_it():
    # member 0 right on the 3 nearest, member 1 on the 5 nearest, member 2 on none
    correct = np.array(
        [[1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 1], [1, 0, 1]]
    )
    P, y, X, query, x = _line_case(correct.astype(bool), QUERY)
    out = KNORAE(k=7).fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(out, QUERY[[1]])  # member 1 alone
    # two members right on the same longest run are both kept
    correct[3:5, 0], correct[5, 0] = 1, 0
    P, y, X, query, x = _line_case(correct.astype(bool), QUERY)
    out = KNORAE(k=7).fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(out, QUERY[[0, 1]].mean(axis=0, keepdims=True))
    hard = KNORAE(k=7, voting="hard").fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(hard, [[0.5, 0.5]])


def test_knora_e_falls_back_to_the_whole_pool_when_no_member_is_right_on_the_nearest():
    correct = np.array([[0, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=bool)
    P, y, X, query, x = _line_case(correct, QUERY)
    out = KNORAE(k=4).fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(out, QUERY.mean(axis=0, keepdims=True))
    hard = KNORAE(k=4, voting="hard").fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(hard, [[2 / 3, 1 / 3]])


def test_ties_go_to_the_lowest_member_index():
    # all three members right on 2 of 3 neighbours: OLA and LCA keep member 0
    correct = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=bool)
    P, y, X, query, x = _line_case(correct, QUERY)
    for cls in (OLA, LCA):
        out = cls(k=3).fit(P, y, X=X).predict(query, X=x)
        np.testing.assert_allclose(out, QUERY[[0]])
    # with member 0 moved last, member 1 (now first of the tied) is chosen by OLA
    order = [1, 2, 0]
    P2 = Predictions(P.values[:, order], P.members, "binary", classes=P.classes)
    q2 = Predictions(query.values[:, order], P.members, "binary", classes=P.classes)
    out = OLA(k=3).fit(P2, y, X=X).predict(q2, X=x)
    np.testing.assert_allclose(out, QUERY[[1]])


def test_lca_counts_only_neighbours_of_the_class_a_member_predicts():
    # every DSEL row is class 0; member 1 predicts class 1 for the query: no such neighbour,
    # competence 0, even though it is right on every neighbour
    correct = np.array([[0, 1, 1], [1, 1, 0], [0, 1, 0]], dtype=bool)
    P, y, X, query, x = _line_case(correct, QUERY)
    np.testing.assert_allclose(OLA(k=3).fit(P, y, X=X).predict(query, X=x), QUERY[[1]])
    np.testing.assert_allclose(LCA(k=3).fit(P, y, X=X).predict(query, X=x), QUERY[[0]])


def test_knora_u_with_no_member_right_counts_every_vote_once():
    # DESlib divides 0 by 0 here; ours is the unweighted pool
    correct = np.zeros((4, 3), dtype=bool)
    P, y, X, query, x = _line_case(correct, QUERY)
    hard = KNORAU(k=3, voting="hard").fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(hard, [[2 / 3, 1 / 3]])
    soft = KNORAU(k=3).fit(P, y, X=X).predict(query, X=x)
    np.testing.assert_allclose(soft, QUERY.mean(axis=0, keepdims=True))


def test_rows_where_members_agree_get_the_mean_of_all_members(wine):
    agree = np.array(
        [[[0.6, 0.3, 0.1], [0.9, 0.05, 0.05], [0.4, 0.35, 0.25]] + [[0.5, 0.3, 0.2]] * 2]
    )
    P = Predictions(agree, wine.oof.members, "multiclass", classes=wine.oof.classes)
    for name, combiner in candidates().items():
        combiner.fit(wine.oof, wine.y, X=wine.X)
        out = combiner.predict(P, X=None if name == "knop" else wine.X_test[:1])
        np.testing.assert_allclose(out, agree.mean(axis=1), err_msg=name)


# ---------------------------------------------------------------- state, weights, the door
@pytest.mark.parametrize("name", list(METHODS))
def test_state_round_trip_gives_identical_predictions(wine, name):
    combiner = candidates()[name].fit(wine.oof, wine.y, X=wine.X)
    X = None if name == "knop" else wine.X_test
    expected = combiner.predict(wine.test, X=X)
    state, arrays = combiner.get_state()
    assert all(np.asarray(a).dtype.kind in "biuf" for a in arrays.values())
    assert arrays["dsel_correct_"].dtype == bool
    loaded = Combiner.from_state(json.loads(json.dumps(state)), arrays)
    assert type(loaded) is type(combiner)
    np.testing.assert_array_equal(loaded.predict(wine.test, X=X), expected)
    assert loaded.used_members().all()


def test_bad_state_is_refused(wine):
    state, arrays = KNORAE().fit(wine.oof, wine.y, X=wine.X).get_state()
    bad = dict(arrays, dsel_correct_=arrays["dsel_correct_"][:, :2])
    with pytest.raises(ValueError, match="dsel_correct_"):
        Combiner.from_state(state, bad)
    bad = dict(arrays, dsel_labels_=arrays["dsel_labels_"] + 5)
    with pytest.raises(ValueError, match="class codes"):
        Combiner.from_state(state, bad)
    state, arrays = METADES().fit(wine.oof, wine.y, X=wine.X).get_state()
    bad = dict(arrays, meta_feature_log_prob_=arrays["meta_feature_log_prob_"][:, :3])
    with pytest.raises(ValueError, match="meta_feature_log_prob_"):
        Combiner.from_state(state, bad)


def test_zero_weight_rows_are_left_out_of_the_dsel(wine):
    weights = np.where(np.arange(len(wine.y)) % 4 == 0, 0.0, 2.5)
    keep = weights > 0
    for name, combiner in candidates().items():
        weighted = combiner.fit(wine.oof, wine.y, X=wine.X, sample_weight=weights)
        full = candidates()[name].fit(wine.oof, wine.y, X=wine.X)
        for attribute in ("dsel_labels_", "dsel_correct_", "dsel_features_", "dsel_profiles_"):
            if hasattr(full, attribute):
                expected = getattr(full, attribute)[keep]
                np.testing.assert_array_equal(getattr(weighted, attribute), expected)
    # KNOP reads no features, so its fit on the kept rows alone is the same combiner
    subset = Predictions(
        wine.oof.values[keep], wine.oof.members, "multiclass", classes=wine.oof.classes
    )
    plain = KNOP().fit(subset, wine.y[keep])
    weighted = KNOP().fit(wine.oof, wine.y, sample_weight=weights)
    np.testing.assert_array_equal(weighted.predict(wine.test), plain.predict(wine.test))
    assert not np.allclose(
        KNOP().fit(wine.oof, wine.y).predict(wine.test), plain.predict(wine.test)
    )


def test_regression_is_refused(regression_zoo):
    X = np.arange(regression_zoo.oof.n_samples, dtype=float)[:, None]
    with pytest.raises(ValueError, match="classification task"):
        KNORAE().fit(regression_zoo.oof, regression_zoo.y, X=X)
    with pytest.raises(ValueError, match="classification task"):
        KNOP().fit(regression_zoo.oof, regression_zoo.y)


def test_features_are_required_where_they_are_read(wine):
    with pytest.raises(ValueError, match="X is required"):
        OLA().fit(wine.oof, wine.y)
    knora = KNORAE().fit(wine.oof, wine.y, X=wine.X)
    with pytest.raises(ValueError, match="X is required"):
        knora.predict(wine.test)
    with pytest.raises(ValueError, match="13 columns"):
        knora.predict(wine.test, X=wine.X_test[:, :5])
    # KNOP measures neighbours in the members' output space only
    assert KNOP.uses_features == "none"
    KNOP().fit(wine.oof, wine.y).predict(wine.test)


def test_candidates_are_unfitted_and_named():
    found = candidates(metric="log_loss")
    assert list(found) == ["ola", "lca", "knora_e", "knora_u", "des_p", "meta_des", "knop"]
    assert all(c.metric == "log_loss" and not hasattr(c, "members_") for c in found.values())
    with pytest.raises(ValueError, match="voting"):
        KNORAE(voting="maybe").fit(*_line_case(np.ones((3, 2), bool), QUERY[:2])[:3])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_predict_folds_shares_one_neighbour_query_with_the_same_numbers(wine, name):
    fitted = METHODS[name]().fit(wine.oof, wine.y, X=wine.X)
    rng = np.random.default_rng(0)
    folds = []
    for _ in range(3):  # fold models that disagree on different rows
        noisy = wine.test.values * rng.uniform(0.5, 1.5, size=wine.test.values.shape)
        noisy /= noisy.sum(axis=2, keepdims=True)
        folds.append(Predictions(noisy, wine.test.members, "multiclass", wine.test.classes))
    expected = np.mean([fitted.predict(f, X=wine.X_test) for f in folds], axis=0)
    np.testing.assert_allclose(fitted.predict_folds(folds, X=wine.X_test), expected, atol=1e-12)
    assert fitted._neighbour_memo is None  # the shared query lives for one call only
