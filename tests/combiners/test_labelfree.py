"""Label-free combiners: Dawid-Skene against crowd-kit and a per-sample computation, the
spectral meta-learner and consensus weights against generated truths, known labels, state."""

import json

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from scipy.special import softmax
from scipy.stats import rankdata
from sklearn.metrics import log_loss

from ensemblex import Predictions
from ensemblex.combiners import Combiner, Mean
from ensemblex.combiners.base import mixture_weights
from ensemblex.combiners.labelfree import (
    PRIOR_ROWS,
    ConsensusWeighting,
    DawidSkene,
    ProbabilisticDawidSkene,
    SpectralMetaLearner,
    candidates,
    dawid_skene_em,
    fit_scale_and_bias,
    fit_temperature,
    median_forecast,
    member_prevalence,
    vote_design,
    weighted_ranks,
)
from ensemblex.tasks import encode_labels

pytestmark = pytest.mark.filterwarnings("ignore::Warning:crowdkit.*")

LABEL_FREE = (DawidSkene, ProbabilisticDawidSkene, SpectralMetaLearner, ConsensusWeighting)


# ---------------------------------------------------------------- generated cases
def _crowd(n, accuracies, k=3, prior=None, seed=0):
    """Members that vote the true class with their accuracy, else a uniform other class;
    probabilities put 0.5 to 0.9 on the vote. Returns P (n, m, k), votes (n, m), truth (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=prior)
    m = len(accuracies)
    right = rng.random((n, m)) < np.asarray(accuracies)
    other = (y[:, None] + rng.integers(1, k, size=(n, m))) % k
    votes = np.where(right, y[:, None], other)
    rest = rng.dirichlet(np.ones(k - 1), size=(n, m))
    top = rng.uniform(0.5, 0.9, size=(n, m, 1))
    P = np.empty((n, m, k))
    for j in range(k):  # the vote gets `top`, the other classes share the rest
        slot = (j - votes - 1) % k  # 0..k-2 for classes other than the vote
        share = np.take_along_axis(rest, np.minimum(slot, k - 2)[..., None], axis=2)[..., 0]
        P[:, :, j] = np.where(votes == j, top[..., 0], (1 - top[..., 0]) * share)
    return P, votes, y


def _gaussian_pool(n, m, prior, mu=1.0, shared=0.8, own=0.6, seed=0):
    """Calibrated members that err together: member j sees ``x_j = mu * onehot(y) + shared
    * z + own * e_j`` (z common to all members, e_j its own noise, both standard normal per
    class) and outputs the exact posterior P(y | x_j). Returns P (n, m, k), y (n,), x."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior, dtype=float)
    k = len(prior)
    y = rng.choice(k, size=n, p=prior)
    x = (
        mu * np.eye(k)[y][:, None, :]
        + shared * rng.normal(size=(n, 1, k))
        + own * rng.normal(size=(n, m, k))
    )
    return softmax(np.log(prior) + mu / (shared**2 + own**2) * x, axis=2), y, x


def _scores(proba, y):
    """(log-loss, accuracy)."""
    proba = np.clip(proba, 1e-15, 1)
    return log_loss(y, proba, labels=range(proba.shape[1])), float(np.mean(proba.argmax(1) == y))


def _crowdkit_frame(votes):
    n, m = votes.shape
    return pd.DataFrame(
        {
            "task": np.repeat(np.arange(n), m),
            "worker": np.tile(np.arange(m), n),
            "label": votes.ravel(),
        }
    )


def _crowdkit_confusion(errors, m, k):
    """crowd-kit's errors_ (rows (worker, vote), columns true class) as (m, c, j)."""
    out = np.zeros((m, k, k))
    for (worker, vote), row in errors.iterrows():
        out[worker, :, vote] = row.reindex(range(k)).to_numpy()
    return out


def test_generated_crowd_has_the_accuracies_it_was_given():
    P, votes, y = _crowd(4000, [0.9, 0.6, 0.4])
    np.testing.assert_array_equal(P.argmax(axis=2), votes)
    np.testing.assert_allclose(P.sum(axis=2), 1)
    np.testing.assert_allclose((votes == y[:, None]).mean(axis=0), [0.9, 0.6, 0.4], atol=0.02)


def test_generated_gaussian_members_are_calibrated_and_err_together():
    P, y, _ = _gaussian_pool(20000, 4, [0.7, 0.3], seed=11)
    # calibrated: among rows where a member says about p, the class occurs about p of the time
    p = P[:, 0, 1]
    bins = np.digitize(p, [0.2, 0.4, 0.6, 0.8])
    for b in range(5):
        np.testing.assert_allclose((y[bins == b] == 1).mean(), p[bins == b].mean(), atol=0.03)
    # and their errors are correlated (the shared noise)
    residual = (y == 1)[:, None] - P[:, :, 1]
    assert np.corrcoef(residual.T)[0, 1] > 0.5


# ---------------------------------------------------------------- Dawid-Skene
@pytest.mark.parametrize("n_iter", [1, 4, 20])
@pytest.mark.parametrize("golden", [False, True])
def test_em_matches_crowdkit_step_for_step(n_iter, golden):
    P, votes, y = _crowd(300, [0.8, 0.7, 0.6, 0.55, 0.9], seed=1)
    n, m, k = P.shape
    known = np.full(n, -1)
    known[:40] = y[:40]
    ck = CrowdKitDawidSkene(n_iter=n_iter, tol=-np.inf)
    ck.fit(_crowdkit_frame(votes), pd.Series(y[:40], index=np.arange(40)) if golden else None)
    init = np.eye(k)[votes].mean(axis=1)  # majority-vote fractions, crowd-kit's start
    ours = dawid_skene_em(
        vote_design(P),
        m,
        init,
        known if golden else None,
        smoothing=0.0,
        max_iter=n_iter,
        tol=-np.inf,
    )
    assert ours.n_iter == n_iter
    np.testing.assert_allclose(ours.prior, ck.priors_.reindex(range(k)).to_numpy(), atol=1e-9)
    np.testing.assert_allclose(ours.confusion, _crowdkit_confusion(ck.errors_, m, k), atol=1e-8)
    # crowd-kit floors its stored posteriors at 1e-10
    np.testing.assert_allclose(
        ours.posteriors, ck.probas_.reindex(index=range(n), columns=range(k)).to_numpy(), atol=2e-10
    )


def _brute_force_posterior(P, prior, confusion, soft):
    """Dawid-Skene posteriors row by row, from the model's definition."""
    n, m, k = P.shape
    out = np.empty((n, k))
    for i in range(n):
        log_post = np.log(prior).copy()
        for member in range(m):
            if soft:  # fractional votes: sum_j p_m(j) log pi_m[c, j]
                log_post += np.log(confusion[member]) @ P[i, member]
            else:
                log_post += np.log(confusion[member][:, P[i, member].argmax()])
        out[i] = np.exp(log_post - log_post.max()) / np.exp(log_post - log_post.max()).sum()
    return out


def test_dawid_skene_converges_to_crowdkits_fixed_point_and_predicts_its_posteriors():
    P, votes, _ = _crowd(300, [0.9, 0.85, 0.8, 0.7, 0.6], seed=2)
    n, m, k = P.shape
    # both run to their fixed point: crowd-kit 50 iterations, ours until the objective
    # stops rising (30)
    ck = CrowdKitDawidSkene(n_iter=50, tol=-np.inf).fit(_crowdkit_frame(votes))
    ds = DawidSkene(smoothing=0.0, max_iter=50, tol=0.0, calibrate=False).fit(P)
    assert ds.converged_
    ck_confusion = _crowdkit_confusion(ck.errors_, m, k)
    ck_prior = ck.priors_.reindex(range(k)).to_numpy()
    np.testing.assert_allclose(ds.confusion_, ck_confusion, atol=1e-5)
    np.testing.assert_allclose(ds.prior_, ck_prior, atol=1e-5)
    # the output is the posterior under crowd-kit's parameters, computed sample by sample
    expected = _brute_force_posterior(P, ck_prior, ck_confusion, soft=False)
    np.testing.assert_allclose(ds.predict(P), expected, atol=1e-4)
    np.testing.assert_array_equal(ds.predict(P).argmax(axis=1), ck.labels_.reindex(range(n)))


@pytest.mark.parametrize("cls", [DawidSkene, ProbabilisticDawidSkene])
def test_dawid_skene_predicts_the_per_sample_posterior_at_an_em_fixed_point(cls, multiclass_zoo):
    P = multiclass_zoo.oof.values
    k = P.shape[2]
    ds = cls(tol=1e-12, max_iter=1000, calibrate=False).fit(multiclass_zoo.oof)
    soft = cls is ProbabilisticDawidSkene
    posterior = _brute_force_posterior(P, ds.prior_, ds.confusion_, soft)
    np.testing.assert_allclose(ds.predict(multiclass_zoo.oof), posterior, atol=1e-10)
    # ... and the parameters are the M-step of those posteriors (EM converged), written out
    votes = P if soft else np.eye(k)[P.argmax(axis=2)]
    counts = np.einsum("nc,nmj->mcj", posterior, votes) + ds.smoothing
    np.testing.assert_allclose(ds.confusion_, counts / counts.sum(2, keepdims=True), atol=1e-5)
    prior = posterior.sum(axis=0) + ds.smoothing
    np.testing.assert_allclose(ds.prior_, prior / prior.sum(), atol=1e-5)


def test_dawid_skene_recovers_the_generated_confusion_matrices():
    accuracies = [0.95, 0.7, 0.6, 0.6, 0.5]
    P, _, y = _crowd(4000, accuracies, seed=3)
    ds = DawidSkene().fit(P)
    diagonal = np.diagonal(ds.confusion_, axis1=1, axis2=2)  # (m, k)
    np.testing.assert_allclose(diagonal, np.tile(accuracies, (3, 1)).T, atol=0.04)
    assert (ds.predict(P).argmax(axis=1) == y).mean() > (P.mean(axis=1).argmax(1) == y).mean()


def test_known_labels_are_fixed_in_em_and_rescue_a_misleading_majority():
    # three members that are wrong 85% of the time (binary: they flip), two that are right:
    # majority vote is mostly wrong, and without labels EM settles in the flipped mode.
    P, votes, y = _crowd(600, [0.15, 0.15, 0.15, 0.85, 0.85], k=2, seed=4)
    codes = np.full(len(y), -1)
    codes[:30] = y[:30]
    result = dawid_skene_em(vote_design(P), 5, np.eye(2)[votes].mean(axis=1), codes)
    np.testing.assert_array_equal(result.posteriors[:30], np.eye(2)[y[:30]])
    rest = slice(30, None)
    no_labels = DawidSkene().fit(P).predict(P[rest]).argmax(axis=1)
    with_labels = DawidSkene().fit(P, np.where(codes >= 0, codes, np.nan)).predict(P[rest])
    assert (no_labels == y[rest]).mean() < 0.2
    assert (with_labels.argmax(axis=1) == y[rest]).mean() > 0.9
    # and the flipping members are read as flipped: their confusion is anti-diagonal
    ds = DawidSkene().fit(P, np.where(codes >= 0, codes, np.nan))
    assert np.all(ds.confusion_[:3, 0, 1] > 0.75) and np.all(ds.confusion_[:3, 1, 0] > 0.75)


def test_fit_temperature_minimises_the_shrunk_log_loss():
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=3, size=(200, 4))
    codes = np.where(rng.random(200) < 0.6, logits.argmax(1), rng.integers(0, 4, 200))
    grid = np.geomspace(0.01, 100, 4001)

    def loss(t, prior_rows):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        labelled = -logp[np.arange(200), codes].sum()
        prior = -(softmax(logits, axis=1) * logp).sum() / 200
        return (labelled + prior_rows * prior) / (200 + prior_rows)

    for prior_rows in (0.0, PRIOR_ROWS, 1e6):
        best = grid[np.argmin([loss(t, prior_rows) for t in grid])]
        assert fit_temperature(logits, codes, prior_rows=prior_rows) == pytest.approx(
            best, rel=3e-3
        )
    assert fit_temperature(logits, codes, prior_rows=1e6) == pytest.approx(1, rel=1e-2)


def test_twenty_labels_calibrate_without_being_driven_to_the_bound(binary_zoo):
    P = binary_zoo.oof
    y = np.full(len(binary_zoo.y), None, dtype=object)
    y[:20] = binary_zoo.y[:20]
    for cls in (DawidSkene, SpectralMetaLearner):
        fitted = cls().fit(P, y)
        assert 0.2 < fitted.temperature_ < 20
        assert cls(calibrate=False).fit(P, y).temperature_ == 1.0


# ---------------------------------------------------------------- consensus calibration
def test_member_prevalence_and_median_forecast_written_out():
    P = np.random.default_rng(12).dirichlet(np.ones(3), size=(50, 5))
    w = np.random.default_rng(13).random(50)
    w /= w.sum()
    expected = np.array([np.median([w @ P[:, j, c] for j in range(5)]) for c in range(3)])
    np.testing.assert_allclose(member_prevalence(P, w), expected / expected.sum())
    rows = np.array([[np.median(P[i, :, c]) for c in range(3)] for i in range(50)])
    np.testing.assert_allclose(median_forecast(P), rows / rows.sum(1, keepdims=True))


def test_weighted_ranks_are_mid_ranks_and_integer_weights_repeat_rows():
    rng = np.random.default_rng(14)
    x = rng.integers(0, 5, size=(40, 3)).astype(float)  # many ties
    np.testing.assert_allclose(weighted_ranks(x, np.ones(40)), (rankdata(x, axis=0) - 0.5) / 40)
    repeats = rng.integers(1, 4, size=40)
    repeated = weighted_ranks(np.repeat(x, repeats, axis=0), np.ones(repeats.sum()))
    np.testing.assert_allclose(np.repeat(weighted_ranks(x, repeats), repeats, axis=0), repeated)


def test_fit_scale_and_bias_is_the_brute_force_minimum():
    rng = np.random.default_rng(15)
    logits = rng.normal(scale=4, size=(300, 2))
    target = softmax(0.3 * logits + [0.0, -0.7] + rng.normal(scale=0.3, size=(300, 2)), axis=1)
    w = rng.random(300)
    w /= w.sum()
    scale, bias = fit_scale_and_bias(logits, target, w)

    def cross_entropy(a, b):
        z = a * (logits[:, 1] - logits[:, 0]) + b  # binary: one logit difference
        log_p1, log_p0 = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        return -(w * (target[:, 1] * log_p1 + target[:, 0] * log_p0)).sum(-1)

    center, width = np.array([0.3, -0.7]), np.array([0.2, 1.0])
    for _ in range(3):  # a grid, then finer grids around its best point
        a, b = np.meshgrid(*np.linspace(center - width, center + width, 41).T, indexing="ij")
        grid = cross_entropy(a[..., None], b[..., None])
        best = np.unravel_index(np.argmin(grid), grid.shape)
        center, width = np.array([a[best], b[best]]), width / 10
    assert scale == pytest.approx(center[0], abs=1e-3)
    assert bias[1] - bias[0] == pytest.approx(center[1], abs=1e-3)


def test_fit_scale_and_bias_matches_the_targets_class_balance():
    rng = np.random.default_rng(16)
    logits = rng.normal(scale=30, size=(500, 5))  # the scale of Dawid-Skene's logits
    noise = rng.dirichlet([5, 1, 1, 0.5, 0.2], size=500)
    target = 0.6 * softmax(0.05 * logits + [0, 1, -1, 0, -2], axis=1) + 0.4 * noise
    w = np.full(500, 1 / 500)
    scale, bias = fit_scale_and_bias(logits, target, w)
    fitted = softmax(scale * logits + bias, axis=1)
    # stationarity in the biases: the output's mean probability of each class is the target's
    np.testing.assert_allclose(w @ fitted, w @ target, atol=1e-6)
    # ... and in the scale (a finite difference of the cross-entropy)

    def loss(a):
        return -(w[:, None] * target * np.log(softmax(a * logits + bias, axis=1))).sum()

    assert abs(loss(scale * 1.001) - loss(scale * 0.999)) / (0.002 * scale) < 1e-5


@pytest.mark.parametrize("cls", [DawidSkene, ProbabilisticDawidSkene, SpectralMetaLearner])
def test_calibrated_output_is_the_scaled_model_with_the_members_class_balance(cls, multiclass_zoo):
    P = multiclass_zoo.oof.values
    fitted = cls().fit(P)
    raw = cls(calibrate=False).fit(P)
    assert (raw.scale_, raw.temperature_) == (1.0, 1.0) and not np.any(raw.bias_)
    logits = np.log(np.maximum(raw.predict(P), 1e-300))
    expected = softmax(fitted.scale_ * logits + fitted.bias_, axis=1)
    np.testing.assert_allclose(fitted.predict(P), expected, atol=1e-9)
    np.testing.assert_allclose(
        fitted.predict(P).mean(axis=0), median_forecast(P).mean(axis=0), atol=1e-6
    )


def test_calibration_removes_the_overconfidence_of_members_that_err_together():
    """Eight calibrated members with a shared noise: a posterior that takes them as
    independent is far too sure (measured .70 for the mean, 3.2 raw Dawid-Skene, 1.03 raw
    soft Dawid-Skene; calibrated .77 and .71, the spectral learner .69)."""
    P, y, _ = _gaussian_pool(4000, 8, [0.4, 0.3, 0.2, 0.1], mu=1.5, shared=1.0, own=0.5)
    fit, test = slice(0, 2000), slice(2000, None)
    mean, _ = _scores(P[test].mean(axis=1), y[test])
    for cls, raw_ratio, calibrated_ratio in (
        (DawidSkene, 3.0, 1.15),
        (ProbabilisticDawidSkene, 1.3, 1.05),
        (SpectralMetaLearner, 0.99, 1.0),
    ):
        raw, _ = _scores(cls(calibrate=False).fit(P[fit]).predict(P[test]), y[test])
        calibrated, _ = _scores(cls().fit(P[fit]).predict(P[test]), y[test])
        if cls is not SpectralMetaLearner:
            assert raw > raw_ratio * mean, cls.__name__
        assert calibrated < calibrated_ratio * mean, cls.__name__


def _rare_class_pool(seed=0):
    """stroke in small: 5% positives, six calibrated members that err together and almost
    never vote the rare class, and a naive-Bayes-like member, noisier and overconfident,
    that votes it on half the rows."""
    P, y, x = _gaussian_pool(6000, 7, [0.95, 0.05], mu=1.0, shared=0.8, own=0.6, seed=seed)
    noisy = x[:, 6:] + np.random.default_rng(seed + 1).normal(scale=0.6, size=(6000, 1, 2))
    odd = softmax(3 * 1.0 / (0.8**2 + 0.6**2) * noisy + np.array([0.0, 3.0]), axis=2)
    return np.concatenate([P[:, :6], odd], axis=1), y


def test_rare_class_votes_mislead_the_old_spectral_learner_and_not_the_new():
    P, y = _rare_class_pool()
    assert 0.4 < (P[:, 6].argmax(1) == 1).mean() and (P[:, :6].argmax(2) == 1).mean() < 0.02
    fit, test = slice(0, 3000), slice(3000, None)
    # argmax votes (the paper's, the old default): the six good members' votes are nearly
    # constant, the odd member carries the covariance and takes the weight; the pool
    # predicts the rare class for most rows
    argmax = SpectralMetaLearner(votes="argmax", calibrate=False).fit(P[fit])
    assert np.argmax(argmax.class_weights_[1]) == 6 and argmax.class_weights_[1, 6] > 0.5
    assert _scores(argmax.predict(P[test]), y[test])[1] < 0.7
    # prevalence votes: every member votes the rare class on 5% of rows; the odd member
    # weighs least
    sml = SpectralMetaLearner(calibrate=False).fit(P[fit])
    np.testing.assert_allclose(sml.prevalence_[1], np.median(P[fit].mean(0)[:, 1]))
    assert np.argmin(sml.class_weights_[1]) == 6
    np.testing.assert_allclose(sml.class_weights_[0], sml.class_weights_[1])


def test_label_free_combiners_beat_the_mean_on_a_rare_class_with_an_odd_member():
    """Measured (log-loss / accuracy): mean .181 / .954; before the calibration and the
    prevalence votes DS .283, soft DS .221, SML 1.23 / .52; now DS .170, soft DS .145, SML
    .145, consensus .137, accuracies within .2 point of the mean's."""
    P, y = _rare_class_pool()
    fit, test = slice(0, 3000), slice(3000, None)
    mean_loss, mean_accuracy = _scores(P[test].mean(axis=1), y[test])
    for cls in LABEL_FREE:
        loss, accuracy = _scores(cls().fit(P[fit]).predict(P[test]), y[test])
        assert loss < 0.95 * mean_loss, cls.__name__
        assert accuracy >= mean_accuracy - 0.005, cls.__name__
    raw_loss, _ = _scores(DawidSkene(calibrate=False).fit(P[fit]).predict(P[test]), y[test])
    assert raw_loss > 1.2 * mean_loss


def test_a_state_without_its_calibration_is_refused(binary_zoo):
    for cls in (DawidSkene, SpectralMetaLearner):
        state, arrays = cls().fit(binary_zoo.oof).get_state()
        del state["fitted"]["scale_"], state["fitted"]["bias_"]
        arrays.pop("bias_")
        with pytest.raises(ValueError):
            Combiner.from_state(json.loads(json.dumps(state)), arrays)


# ---------------------------------------------------------------- spectral meta-learner
def test_spectral_meta_learner_estimates_balanced_accuracies_and_weights_the_best():
    accuracies = np.array([0.95, 0.65, 0.6, 0.6, 0.55, 0.7])
    P, votes, y = _crowd(6000, accuracies, k=2, seed=6)
    sml = SpectralMetaLearner().fit(P)
    truth = np.array([[(votes[y == c, j] == c).mean() for c in (0, 1)] for j in range(6)]).mean(1)
    np.testing.assert_allclose(sml.balanced_accuracy_[1], truth, atol=0.03)
    np.testing.assert_allclose(sml.class_weights_[0], sml.class_weights_[1])
    assert np.argmax(sml.class_weights_[1]) == 0
    # weights: log-odds of the balanced accuracy, normalised
    v = np.clip(2 * sml.balanced_accuracy_[1] - 1, 0, 1 - 1e-3)
    log_odds = np.log((1 + v) / (1 - v))
    np.testing.assert_allclose(sml.class_weights_[1], log_odds / log_odds.sum(), atol=1e-9)
    # binary output: the weighted mean of the members, then (calibrate=True) its logits
    # scaled and shifted
    pool = np.einsum("nmk,m->nk", P, sml.class_weights_[1])
    raw = SpectralMetaLearner(calibrate=False).fit(P)
    np.testing.assert_array_equal(raw.class_weights_, sml.class_weights_)
    np.testing.assert_allclose(raw.predict(P), pool)
    np.testing.assert_allclose(sml.predict(P), softmax(sml.scale_ * np.log(pool) + sml.bias_, 1))
    assert (sml.predict(P).argmax(1) == y).mean() > (P.mean(axis=1).argmax(1) == y).mean() + 0.05


def test_spectral_eigenvector_is_the_rank_one_part_of_the_vote_covariance():
    # the model's covariance of +-1 votes: (1 - b^2) v v^T off the diagonal
    accuracies = np.array([0.9, 0.8, 0.7, 0.6, 0.65])
    P, votes, _ = _crowd(20000, accuracies, k=2, prior=[0.5, 0.5], seed=7)
    f = np.where(votes == 1, 1.0, -1.0)
    Q = np.cov(f.T, bias=True)
    v = 2 * accuracies - 1
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(Q[off], np.outer(v, v)[off], atol=0.02)
    sml = SpectralMetaLearner().fit(P)
    np.testing.assert_allclose(2 * sml.balanced_accuracy_[1] - 1, v, atol=0.02)


def test_spectral_multiclass_is_one_vs_rest_renormalised(multiclass_zoo):
    sml = SpectralMetaLearner(calibrate=False).fit(multiclass_zoo.oof)
    P = multiclass_zoo.test.values
    pooled = np.einsum("nmk,km->nk", P, sml.class_weights_)
    np.testing.assert_allclose(sml.predict(P), pooled / pooled.sum(1, keepdims=True))
    np.testing.assert_allclose(sml.class_weights_.sum(axis=1), 1)
    # the votes: a member votes c where its probability of c is in its top prevalence[c]
    # (mid-ranks); the estimated balanced accuracies of those votes are near their truth
    codes = encode_labels(multiclass_zoo.y, multiclass_zoo.oof.classes)
    V = multiclass_zoo.oof.values
    np.testing.assert_allclose(
        sml.prevalence_,
        np.median(V.mean(axis=0), axis=0) / np.sum(np.median(V.mean(axis=0), axis=0)),
    )
    votes = (rankdata(V, axis=0) - 0.5) / len(V) > 1 - sml.prevalence_  # (n, m, k)
    truth = np.array(
        [
            [
                (votes[codes == c, j, c].mean() + (~votes[codes != c, j, c]).mean()) / 2
                for c in range(10)
            ]
            for j in range(5)
        ]
    )
    np.testing.assert_allclose(sml.balanced_accuracy_.mean(0), truth.mean(1), atol=0.025)
    # naive Bayes and the shallow tree (members 3 and 4) are the worst, and weigh least
    np.testing.assert_array_equal(np.argsort(truth.mean(1))[:2], [4, 3])
    np.testing.assert_array_equal(np.argsort(sml.class_weights_.mean(0))[:2], [4, 3])


# ---------------------------------------------------------------- consensus
def test_consensus_weights_the_informative_member_most_when_the_others_are_noise():
    rng = np.random.default_rng(8)
    n, k = 2000, 3
    y = rng.integers(0, k, n)
    informative = np.full((n, k), 0.05)
    informative[np.arange(n), y] = 0.9
    noise = rng.dirichlet(np.ones(k), size=(n, 5))
    P = np.concatenate([informative[:, None], noise], axis=1)
    cw = ConsensusWeighting().fit(P)
    assert np.argmax(cw.weights_) == 0 and cw.weights_[0] > 2 * cw.weights_[1:].max()
    # the disagreement, written out: minus the mean log-probability of the consensus class
    consensus = P.mean(axis=1).argmax(axis=1)
    expected = [-np.mean(np.log(np.maximum(P[np.arange(n), j, consensus], 1e-4))) for j in range(6)]
    np.testing.assert_allclose(cw.disagreement_, expected)
    scaled = cw.disagreement_ / np.median(cw.disagreement_)
    raw = np.exp(-scaled / 0.2) / np.exp(-scaled / 0.2).sum()
    raw[raw < 1e-6] = 0
    np.testing.assert_allclose(cw.weights_, raw / raw.sum())
    np.testing.assert_allclose(cw.predict(P), np.einsum("nmk,m->nk", P, cw.weights_))


def test_consensus_regression_downweights_members_far_from_the_median():
    rng = np.random.default_rng(9)
    y = rng.normal(size=1000)
    noise = np.array([0.1, 0.2, 0.3, 1.0, 3.0])
    P = (y[:, None] + rng.normal(size=(1000, 5)) * noise)[..., None]
    cw = ConsensusWeighting(temperature=1.0).fit(P)
    assert np.all(np.diff(cw.weights_) < 0)  # ordered as the noise
    median = np.median(P[:, :, 0], axis=1)
    np.testing.assert_allclose(cw.disagreement_, ((P[:, :, 0] - median[:, None]) ** 2).mean(0))
    top = ConsensusWeighting(top_k=2).fit(P)
    np.testing.assert_array_equal(top.weights_, [0.5, 0.5, 0, 0, 0])
    np.testing.assert_array_equal(top.used_members(), [True, True, False, False, False])
    np.testing.assert_array_equal(mixture_weights(top), top.weights_)


def test_consensus_temperature_from_labels_is_the_grid_minimum_of_the_shrunk_loss(binary_zoo):
    from ensemblex.combiners.labelfree import _DEFAULT_TEMPERATURE, _TEMPERATURE_GRID

    P = binary_zoo.oof.values
    codes = encode_labels(binary_zoo.y, binary_zoo.oof.classes)
    known = np.full(len(codes), np.nan)
    known[:40] = codes[:40]
    cw = ConsensusWeighting().fit(P, known)
    scaled = cw.disagreement_ / np.median(cw.disagreement_)

    def mixture(t):
        w = np.exp(-scaled / t) / np.exp(-scaled / t).sum()
        w[w < 1e-6] = 0
        return np.einsum("nmk,m->nk", P, w / w.sum())

    default = mixture(_DEFAULT_TEMPERATURE)
    objective = [
        -np.log(mixture(t)[np.arange(40), codes[:40]]).sum()
        - PRIOR_ROWS * (default * np.log(np.maximum(mixture(t), 1e-300))).sum(1).mean()
        for t in _TEMPERATURE_GRID
    ]
    assert cw.temperature_ == _TEMPERATURE_GRID[np.argmin(objective)]


# ---------------------------------------------------------------- protocol
@pytest.mark.parametrize("cls", LABEL_FREE)
def test_fits_without_labels_and_outputs_probabilities(cls, multiclass_zoo):
    fitted = cls().fit(multiclass_zoo.oof)
    pred = fitted.predict(multiclass_zoo.test)
    assert pred.shape == (len(multiclass_zoo.y_test), 10)
    np.testing.assert_allclose(pred.sum(axis=1), 1)
    assert np.all(pred >= 0)
    # a plain array and y=None give the same fit
    again = cls().fit(multiclass_zoo.oof.values, None).predict(multiclass_zoo.test.values)
    np.testing.assert_allclose(pred, again)
    # all labels given: still works (how nested cross-validation scores it)
    full = cls().fit(multiclass_zoo.oof, multiclass_zoo.y)
    assert full.score(multiclass_zoo.test, multiclass_zoo.y_test) <= Mean().fit(
        multiclass_zoo.oof, multiclass_zoo.y
    ).score(multiclass_zoo.test, multiclass_zoo.y_test)


def test_label_free_combiners_beat_the_mean_on_the_multiclass_zoo(multiclass_zoo):
    """Members of unequal quality (a shallow tree, naive Bayes): without any label, every
    label-free combiner beats the plain mean's log-loss (measured: .191, .200, .160, .192
    against .288; before the calibration and prevalence votes .226, .158, .271, .192: these
    members differ more than cross-fitted GBDTs, and the soft Dawid-Skene posterior was less
    overconfident), and all but the soft Dawid-Skene its accuracy."""
    codes = encode_labels(multiclass_zoo.y_test, multiclass_zoo.test.classes)
    mean = Mean().fit(multiclass_zoo.oof, multiclass_zoo.y)
    mean_accuracy = (mean.predict(multiclass_zoo.test).argmax(1) == codes).mean()
    for cls in LABEL_FREE:
        fitted = cls().fit(multiclass_zoo.oof)
        assert fitted.score(multiclass_zoo.test, multiclass_zoo.y_test) < mean.score(
            multiclass_zoo.test, multiclass_zoo.y_test
        ), cls.__name__
        accuracy = (fitted.predict(multiclass_zoo.test).argmax(1) == codes).mean()
        assert cls is ProbabilisticDawidSkene or accuracy >= mean_accuracy, cls.__name__


@pytest.mark.parametrize("cls", LABEL_FREE)
def test_integer_sample_weights_are_repeated_rows(cls, binary_zoo):
    """Without labels; with some, the temperature's labelled rows are rescaled to their
    count (so a prior worth ten rows means the same whatever the weights' scale)."""
    P = binary_zoo.oof.values
    repeats = np.random.default_rng(10).integers(0, 4, size=len(P))
    weighted = cls().fit(P, sample_weight=repeats)
    repeated = cls().fit(np.repeat(P, repeats, axis=0))
    test = binary_zoo.test.values
    np.testing.assert_allclose(weighted.predict(test), repeated.predict(test), atol=1e-6)


@pytest.mark.parametrize("cls", LABEL_FREE)
def test_state_round_trip(cls, binary_zoo):
    y = np.full(len(binary_zoo.y), None, dtype=object)
    y[::7] = binary_zoo.y[::7]
    fitted = cls().fit(binary_zoo.oof, y)
    state, arrays = fitted.get_state()
    loaded = Combiner.from_state(json.loads(json.dumps(state)), arrays)
    assert type(loaded) is cls
    np.testing.assert_array_equal(loaded.predict(binary_zoo.test), fitted.predict(binary_zoo.test))
    np.testing.assert_array_equal(loaded.used_members(), fitted.used_members())


def test_state_with_bad_arrays_is_refused(binary_zoo):
    state, arrays = DawidSkene().fit(binary_zoo.oof).get_state()
    arrays = {**arrays, "confusion_": arrays["confusion_"][:2]}
    with pytest.raises(ValueError, match="confusion_ must be"):
        Combiner.from_state(state, arrays)


@pytest.mark.parametrize("cls", [DawidSkene, ProbabilisticDawidSkene, SpectralMetaLearner])
def test_regression_is_refused_with_a_clear_message(cls, regression_zoo):
    with pytest.raises(ValueError, match="must have a binary or multiclass task, however: task="):
        cls().fit(regression_zoo.oof)


def test_consensus_works_for_regression_with_some_labels(regression_zoo):
    y = regression_zoo.y.astype(float).copy()
    y[20:] = np.nan
    cw = ConsensusWeighting().fit(regression_zoo.oof, y)
    pred = cw.predict(regression_zoo.test)
    np.testing.assert_allclose(
        pred, np.einsum("nmk,m->nk", regression_zoo.test.values, cw.weights_)
    )


def test_candidates_are_unfitted_label_free_combiners():
    found = candidates(metric="log_loss")
    assert list(found) == ["dawid_skene", "ds_proba", "sml", "consensus"]
    for combiner in found.values():
        assert not combiner.needs_labels and combiner.uses_features == "none"
        assert combiner.metric == "log_loss" and not hasattr(combiner, "members_")


def test_predictions_container_with_names(binary_zoo):
    fitted = SpectralMetaLearner().fit(binary_zoo.oof)
    reordered = binary_zoo.test.select(list(reversed(binary_zoo.test.members)))
    assert isinstance(reordered, Predictions)
    np.testing.assert_allclose(fitted.predict(reordered), fitted.predict(binary_zoo.test))
