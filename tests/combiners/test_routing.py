"""Routing combiners: fuzzy c-means routing and the softmax gate over members."""

import json

import numpy as np
import pandas as pd
import pytest
from feature_zoo import FeatureZoo, scaled
from scipy.optimize import check_grad
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ensemblex import Weighted
from ensemblex.combiners import Combiner
from ensemblex.combiners.features import encode_features
from ensemblex.combiners.routing import (
    AUTO_ALPHAS,
    FuzzyRouting,
    GatedMixture,
    candidates,
    fuzzy_c_means,
    fuzzy_memberships,
    gate_objective,
)
from ensemblex.metrics import get_metric

# ---------------------------------------------------------------- data


@pytest.fixture(scope="module", params=["regression", "binary", "multiclass"])
def feature_zoo(request):
    if request.param == "regression":
        X, y = load_diabetes(return_X_y=True)
        members = [
            scaled(Ridge(1.0)),
            scaled(KNeighborsRegressor(10)),
            DecisionTreeRegressor(max_depth=3, random_state=0),
        ]
        return FeatureZoo(X, y, members, "regression")
    if request.param == "binary":
        X, y = load_breast_cancer(return_X_y=True)
        members = [
            scaled(LogisticRegression(C=0.05)),
            scaled(KNeighborsClassifier(15)),
            GaussianNB(),
            DecisionTreeClassifier(max_depth=3, random_state=0),
        ]
        return FeatureZoo(X, y, members, "binary", classes=np.array([0, 1]))
    X, y = load_wine(return_X_y=True)
    members = [
        scaled(LogisticRegression(C=0.05)),
        scaled(KNeighborsClassifier(10)),
        GaussianNB(),
        DecisionTreeClassifier(max_depth=2, random_state=0),
    ]
    return FeatureZoo(X, y, members, "multiclass", classes=np.arange(3))


def two_sided(task: str, n: int, seed: int):
    """Member 0 is right where x0 < 0, member 1 where x0 > 0; x1 is what the truth reads.

    Returns P (n, 2, k), y and X (n, 2).
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    left = X[:, 0] < 0
    if task == "regression":
        y = np.sin(2 * X[:, 1]) + X[:, 1]
        good = y + 0.1 * rng.standard_normal(n)
        bad = y + 1.5 * rng.standard_normal(n)
        P = np.stack([np.where(left, good, bad), np.where(left, bad, good)], axis=1)[..., None]
        return P, y, X
    k = 2 if task == "binary" else 3
    logits = np.stack([2.5 * X[:, 1] * (c - (k - 1) / 2) for c in range(k)], axis=1)
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in truth])
    noise = rng.dirichlet(np.ones(k), size=n)
    good = 0.95 * truth + 0.05 / k
    P = np.stack(
        [np.where(left[:, None], good, noise), np.where(left[:, None], noise, good)], axis=1
    )
    return P, y, X


# ---------------------------------------------------------------- fuzzy c-means


def _brute_force_memberships(X, centres, m):
    U = np.zeros((len(X), len(centres)))
    for i in range(len(X)):
        d = [np.sqrt(np.sum((X[i] - v) ** 2)) for v in centres]
        for c in range(len(centres)):
            U[i, c] = 1.0 / sum((d[c] / d[j]) ** (2 / (m - 1)) for j in range(len(centres)))
    return U


@pytest.mark.parametrize("m", [2.0, 1.3, 3.0])
def test_memberships_match_the_brute_force_formula(m):
    rng = np.random.default_rng(0)
    X, centres = rng.normal(size=(40, 3)), rng.normal(size=(4, 3))
    U = fuzzy_memberships(X, centres, m)
    np.testing.assert_allclose(U, _brute_force_memberships(X, centres, m), rtol=1e-10)
    np.testing.assert_allclose(U.sum(axis=1), 1.0)
    # a row on a centre belongs to it alone
    on_centre = fuzzy_memberships(centres[[2]], centres, m)
    np.testing.assert_allclose(on_centre, [[0.0, 0.0, 1.0, 0.0]], atol=1e-12)


def test_fuzzy_c_means_reaches_its_fixed_point():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(loc, 0.5, size=(60, 2)) for loc in ([-3, 0], [3, 0], [0, 4])])
    s = rng.uniform(0.5, 2.0, size=len(X))
    centres, U, n_iter = fuzzy_c_means(X, 3, 2.0, sample_weight=s, tol=1e-10, random_state=0)
    assert n_iter < 150
    np.testing.assert_allclose(U, _brute_force_memberships(X, centres, 2.0), rtol=1e-8)
    for c in range(3):  # each centre is the weighted mean of its rows, weights s u^m
        pull = s * U[:, c] ** 2
        np.testing.assert_allclose(centres[c], pull @ X / pull.sum(), atol=1e-6)
    # the three blobs are found
    found = np.sort(np.round(centres[:, 0] + 10 * centres[:, 1]))
    np.testing.assert_allclose(found, [-3, 3, 40], atol=1.0)


# ---------------------------------------------------------------- gate objective


@pytest.mark.parametrize("regression", [False, True])
def test_gate_gradient_matches_finite_differences(regression):
    rng = np.random.default_rng(2)
    n, d, m = 50, 3, 4
    X = rng.normal(size=(n, d))
    A = rng.normal(size=(n, m)) if regression else rng.uniform(0.01, 1.0, size=(n, m))
    target = rng.normal(size=n) if regression else None
    w = rng.uniform(size=n)
    w /= w.sum()
    prior = np.log(rng.dirichlet(np.ones(m)))
    args = (X, A, target, w, 0.1, 0.05, prior)
    theta = 0.3 * rng.normal(size=d * m + m)
    error = check_grad(
        lambda t: gate_objective(t, *args)[0], lambda t: gate_objective(t, *args)[1], theta
    )
    grad_norm = np.linalg.norm(gate_objective(theta, *args)[1])
    assert error < 1e-6 * max(grad_norm, 1.0)
    # and the loss is the mixture's, computed row by row
    W, b = theta[: d * m].reshape(d, m), theta[d * m :]
    loss = 0.1 * np.sum(W**2) + 0.05 * np.sum((b - prior) ** 2)
    for i in range(n):
        g = np.exp(X[i] @ W + b)
        q = (g / g.sum()) @ A[i]
        loss += w[i] * ((q - target[i]) ** 2 if regression else -np.log(q))
    assert gate_objective(theta, *args)[0] == pytest.approx(loss, rel=1e-12)


# ---------------------------------------------------------------- routing where it matters


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
@pytest.mark.parametrize("make", [FuzzyRouting, GatedMixture])
def test_routing_picks_the_right_member_on_each_side(task, make):
    P, y, X = two_sided(task, 800, seed=3)
    P_new, y_new, X_new = two_sided(task, 800, seed=4)
    metric = get_metric("auto", task)
    routed = make().fit(P, y, X=X)
    static = Weighted().fit(P, y)
    routed_loss = metric.loss(y_new, routed.predict(P_new, X=X_new))
    static_loss = metric.loss(y_new, static.predict(P_new))
    # the best possible (each side's right member alone): 0.27 (regression), 0.68, 0.68
    assert routed_loss < 0.8 * static_loss, (routed_loss, static_loss)
    weights = routed.row_weights(X_new)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    far_left, far_right = X_new[:, 0] < -0.7, X_new[:, 0] > 0.7
    assert weights[far_left, 0].mean() > 0.8
    assert weights[far_right, 1].mean() > 0.8


# ---------------------------------------------------------------- on a real zoo


def test_fuzzy_routing_output_is_the_membership_mix_row_by_row(feature_zoo):
    z = feature_zoo
    routing = FuzzyRouting(n_clusters=3).fit(z.oof, z.y, X=z.X)
    pred = routing.predict(z.test, X=z.X_test)
    Xe = encode_features(routing.feature_encoding_, z.X_test)
    U = _brute_force_memberships(Xe, routing.centres_, routing.fuzzifier_)
    for i in range(0, len(Xe), 7):
        expected = sum(
            U[i, c] * (routing.cluster_weights_[c] @ z.test.values[i]) for c in range(len(U[i]))
        )
        np.testing.assert_allclose(pred[i], expected, rtol=1e-9, atol=1e-12)
    # each cluster's weights: the convex fit on rows weighted by memberships, shrunk
    Xf = encode_features(routing.feature_encoding_, z.X)
    U_fit = fuzzy_memberships(Xf, routing.centres_, routing.fuzzifier_)
    local = Weighted().fit(z.oof, z.y, sample_weight=U_fit[:, 1]).weights_
    glob = Weighted().fit(z.oof, z.y).weights_
    shrink = routing.shrinkage
    np.testing.assert_allclose(
        routing.cluster_weights_[1], (1 - shrink) * local + shrink * glob, atol=1e-3
    )
    if z.task != "regression":
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)


def test_gate_output_is_the_softmax_mix_row_by_row(feature_zoo):
    z = feature_zoo
    gate = GatedMixture().fit(z.oof, z.y, X=z.X)
    pred = gate.predict(z.test, X=z.X_test)
    Xe = encode_features(gate.feature_encoding_, z.X_test)
    for i in range(0, len(Xe), 7):
        logits = Xe[i] @ gate.gate_coef_ + gate.gate_bias_
        g = np.exp(logits - logits.max())
        np.testing.assert_allclose(pred[i], (g / g.sum()) @ z.test.values[i], rtol=1e-9)
    if z.task != "regression":
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)
    # the gate does not do worse than the static weights it starts from, on the fit rows
    metric = get_metric("auto", z.task)
    static = Weighted().fit(z.oof, z.y).predict(z.oof)
    y = z.codes(z.y)
    assert metric.loss(y, gate.predict(z.oof, X=z.X)) <= metric.loss(y, static) + 1e-9


def test_huge_alpha_reproduces_the_static_weights(feature_zoo):
    z = feature_zoo
    static = Weighted().fit(z.oof, z.y)
    gate = GatedMixture(alpha=1e8).fit(z.oof, z.y, X=z.X)
    np.testing.assert_allclose(gate.static_weights_, static.weights_)
    assert np.abs(gate.gate_coef_).max() < 1e-6
    weights = gate.row_weights(z.X_test)
    np.testing.assert_allclose(weights, weights[:1].repeat(len(weights), axis=0), atol=1e-6)
    metric = get_metric("auto", z.task)
    y = z.codes(z.y)
    loss_gate = metric.loss(y, gate.predict(z.oof, X=z.X))
    loss_static = metric.loss(y, static.predict(z.oof))
    assert loss_gate == pytest.approx(loss_static, rel=2e-3)
    np.testing.assert_allclose(
        gate.predict(z.test, X=z.X_test), static.predict(z.test), atol=0.02 * z.y.std() + 0.02
    )
    # with the bias held too, the gate is the static weights floored at 1e-3, renormalised
    held = GatedMixture(alpha=1e8, beta=1e8).fit(z.oof, z.y, X=z.X)
    floored = np.maximum(static.weights_, 1e-3)
    np.testing.assert_allclose(held.row_weights(z.X_test[:5]), [floored / floored.sum()] * 5)


def test_integer_sample_weights_equal_repeated_rows():
    P, y, X = two_sided("binary", 300, seed=5)
    # a categorical feature: its 0/1 encoding is the same for the weighted and repeated rows
    side = pd.DataFrame({"side": np.where(X[:, 0] < 0, "left", "right")})
    counts = np.random.default_rng(0).integers(1, 4, size=len(y))
    rows = np.repeat(np.arange(len(y)), counts)
    weighted = GatedMixture().fit(P, y, X=side, sample_weight=counts)
    repeated = GatedMixture().fit(P[rows], y[rows], X=side.iloc[rows])
    np.testing.assert_allclose(weighted.static_weights_, repeated.static_weights_, atol=1e-6)
    np.testing.assert_allclose(weighted.gate_coef_, repeated.gate_coef_, atol=1e-4)
    np.testing.assert_allclose(weighted.predict(P, X=side), repeated.predict(P, X=side), atol=1e-5)
    assert not np.allclose(weighted.gate_coef_, GatedMixture().fit(P, y, X=side).gate_coef_)


@pytest.mark.parametrize("make", [FuzzyRouting, GatedMixture])
def test_state_round_trip_and_unused_members(feature_zoo, make):
    z = feature_zoo
    combiner = make().fit(z.oof, z.y, X=z.X)
    state, arrays = combiner.get_state()
    loaded = Combiner.from_state(json.loads(json.dumps(state)), arrays)
    expected = combiner.predict(z.test, X=z.X_test)
    np.testing.assert_array_equal(loaded.predict(z.test, X=z.X_test), expected)
    used = combiner.used_members()
    assert used.dtype == bool and used.any()
    values = z.test.values.copy()
    values[:, ~used] = 0.0 if z.task == "regression" else 1.0 / z.test.n_outputs
    np.testing.assert_allclose(combiner.predict(values, X=z.X_test), expected, atol=1e-12)


@pytest.mark.parametrize("make", [FuzzyRouting, GatedMixture])
def test_features_are_required(make):
    P, y, X = two_sided("binary", 100, seed=6)
    with pytest.raises(ValueError, match="X is required"):
        make().fit(P, y)
    fitted = make().fit(P, y, X=X)
    with pytest.raises(ValueError, match="X is required"):
        fitted.predict(P)
    with pytest.raises(ValueError, match="X must have one row per sample"):
        fitted.predict(P, X=X[:10])


def test_bad_state_is_refused(feature_zoo):
    z = feature_zoo
    state, arrays = FuzzyRouting().fit(z.oof, z.y, X=z.X).get_state()
    arrays = {**arrays, "cluster_weights_": -arrays["cluster_weights_"]}
    with pytest.raises(ValueError, match="cluster_weights_"):
        Combiner.from_state(state, arrays)


def test_candidates():
    found = candidates(metric="rmse", random_state=3)
    assert set(found) == {"fuzzy_routing", "gate"}
    assert isinstance(found["fuzzy_routing"], FuzzyRouting)
    assert found["fuzzy_routing"].random_state == 3
    assert isinstance(found["gate"], GatedMixture) and found["gate"].metric == "rmse"
    assert all(c.uses_features == "required" for c in found.values())


def test_binary_probabilities_are_the_mixture_of_members():
    # a one-line reference: two members, constant gate = static weights on a tiny case
    P = np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.9, 0.1], [0.5, 0.5]]] * 10)
    y = np.array([1, 0] * 10)
    X = np.zeros((20, 1))  # no feature signal: the gate reduces to softmax(b)
    gate = GatedMixture().fit(P, y, X=X)
    g = gate.row_weights(X)[0]
    np.testing.assert_allclose(gate.predict(P, X=X), np.einsum("m,nmk->nk", g, P))
    # member 0 is right on every row: the gate puts (almost) all weight there
    assert g[0] > 0.95


def test_full_shrinkage_is_the_static_combiner(feature_zoo):
    z = feature_zoo
    routing = FuzzyRouting(shrinkage=1.0).fit(z.oof, z.y, X=z.X)
    static = Weighted().fit(z.oof, z.y)
    np.testing.assert_allclose(
        routing.predict(z.test, X=z.X_test), static.predict(z.test), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_array_equal(routing.used_members(), static.used_members())


def test_auto_alpha_routes_where_the_features_tell_and_holds_where_they_do_not():
    P, y, X = two_sided("binary", 600, seed=7)
    routed = GatedMixture(alpha="auto").fit(P, y, X=X)
    assert routed.alpha_ in AUTO_ALPHAS and routed.alpha_ <= 1e-3
    noise = np.random.default_rng(8).normal(size=X.shape)  # features that say nothing
    held = GatedMixture(alpha="auto").fit(P, y, X=noise)
    assert held.alpha_ >= 1e-2
    static = Weighted().fit(P, y).predict(P)
    np.testing.assert_allclose(held.predict(P, X=noise), static, atol=0.05)
