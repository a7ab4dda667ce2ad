import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ensemblex import Predictions
from ensemblex.cascade import Cascade
from ensemblex.metrics.calibration import TemperatureScaling
from ensemblex.metrics.selective import coverage_at_risk
from ensemblex.tasks import encode_labels


def _costs(P):
    return np.linspace(1.0, 10.0, P.n_members)  # members in their given order, cheapest first


def test_confidence_cascade_meets_its_target_on_the_fitting_rows(multiclass_zoo):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    cascade = Cascade(costs=_costs(P), epsilon=0.01).fit(P, y)
    assert cascade.order_ == list(P.members)
    assert cascade.chosen_.accuracy >= cascade.full_accuracy_ - 0.01
    out = cascade.predict(P)
    codes = encode_labels(y, P.classes)
    assert np.mean(out.proba.argmax(axis=1) == codes) == pytest.approx(cascade.chosen_.accuracy)
    assert out.cost.mean() == pytest.approx(cascade.chosen_.cost)
    np.testing.assert_array_equal(out.cost, cascade.stage_costs_[out.exit_stage])
    assert out.cost.mean() <= cascade.stage_costs_[-1]
    np.testing.assert_allclose(out.proba.sum(axis=1), 1.0)


def test_exit_rule_by_hand():
    # two members, costs 1 and 3; stage 1 = member a, stage 2 = mean of a and b
    values = np.array([[[0.95, 0.05], [0.1, 0.9]], [[0.6, 0.4], [0.1, 0.9]]])
    P = Predictions(values, ["a", "b"], "binary")
    cascade = Cascade(costs=[1.0, 3.0], epsilon=1.0).fit(P, [0, 1])
    cascade.threshold_ = 0.9
    out = cascade.predict(P)
    np.testing.assert_array_equal(out.exit_stage, [0, 1])
    np.testing.assert_array_equal(out.cost, [1.0, 4.0])
    np.testing.assert_allclose(out.proba[1], [0.35, 0.65])


def test_pareto_front_is_monotone(multiclass_zoo):
    cascade = Cascade(costs=_costs(multiclass_zoo.oof)).fit(multiclass_zoo.oof, multiclass_zoo.y)
    costs = [p.cost for p in cascade.front_]
    accs = [p.accuracy for p in cascade.front_]
    assert costs == sorted(costs) and accs == sorted(accs)
    assert cascade.front_[-1].accuracy >= cascade.full_accuracy_ - 1e-12


def test_window_cascade_keeps_coverage_at_risk_and_its_cost_by_hand(binary_zoo):
    P, y = binary_zoo.oof, binary_zoo.y
    # the weak tree first, so that rows leave at several stages
    costs = np.array([1.0 if m == "tree" else 2.0 + j for j, m in enumerate(P.members)])
    cascade = Cascade(
        rule="window",
        target="coverage_at_risk",
        risk=0.05,
        epsilon=0.02,
        costs=costs,
        weights=np.ones(P.n_members),
    ).fit(P, y)
    out = cascade.predict(P)
    codes = encode_labels(y, P.classes)
    assert coverage_at_risk(out.proba, codes, 0.05) >= cascade.full_coverage_at_risk_ - 0.02
    # The cost by hand: stage s is the mean of the s + 1 cheapest members; a row leaves at
    # the first stage whose P(positive) lies at least the threshold away from every boundary.
    order = np.argsort(costs, kind="stable")
    assert cascade.order_ == [P.members[j] for j in order]
    stages = np.cumsum(P.values[:, order], axis=1) / np.arange(1, P.n_members + 1)[None, :, None]
    distance = np.abs(stages[:, :, 1, None] - np.asarray(cascade.boundaries_)).min(axis=2)
    leaves = distance >= cascade.threshold_
    leaves[:, -1] = True
    exit_stage = leaves.argmax(axis=1)
    assert len(np.unique(exit_stage)) >= 3
    paid = np.cumsum(costs[order])[exit_stage]
    np.testing.assert_array_equal(out.exit_stage, exit_stage)
    np.testing.assert_allclose(out.cost, paid)
    np.testing.assert_allclose(out.proba, stages[np.arange(P.n_samples), exit_stage])
    assert cascade.chosen_.relative_cost == pytest.approx(paid.mean() / costs.sum(), rel=1e-12)
    assert cascade.chosen_.relative_cost < 0.2  # most rows leave after the tree alone


def test_stage_probabilities_are_cumulative_weighted_means_in_cost_order():
    rng = np.random.default_rng(0)
    values = rng.dirichlet(np.ones(3), size=(40, 4))
    P = Predictions(values, ["a", "b", "c", "d"], "multiclass", classes=np.arange(3))
    y = values.mean(axis=1).argmax(axis=1)
    weights = np.array([0.5, 0.0, 0.2, 0.3])
    cascade = Cascade(costs=[3.0, 1.0, 2.0, 0.5], weights=weights, epsilon=1.0).fit(P, y)
    assert cascade.order_ == ["d", "c", "a"]  # b has zero weight
    d, c, a = values[:, 3], values[:, 2], values[:, 0]
    expected = np.stack([d, (0.3 * d + 0.2 * c) / 0.5, (0.3 * d + 0.2 * c + 0.5 * a) / 1.0], axis=1)
    np.testing.assert_allclose(cascade.stage_probabilities(P), expected, rtol=1e-12)
    np.testing.assert_array_equal(cascade.stage_costs_, [0.5, 2.5, 5.5])
    shuffled = P.select(["c", "a", "d", "b"])
    np.testing.assert_allclose(cascade.stage_probabilities(shuffled), expected, rtol=1e-12)


def test_cascade_and_temperature_scaling_are_estimators(binary_zoo):
    cascade = Cascade(rule="window", epsilon=0.01, costs=[1.0, 2.0], n_thresholds=50)
    copy = clone(cascade)
    assert copy is not cascade
    assert copy.get_params() == cascade.get_params()
    assert copy.get_params()["rule"] == "window" and copy.get_params()["costs"] == [1.0, 2.0]
    assert not hasattr(copy, "threshold_")
    scaler = TemperatureScaling(bounds=(0.1, 5.0))
    assert clone(scaler).get_params() == {"bounds": (0.1, 5.0)}
    with pytest.raises(NotFittedError, match="TemperatureScaling is not fitted"):
        scaler.transform([[0.5, 0.5]])
    with pytest.raises(ValueError, match="bounds must be two numbers"):
        TemperatureScaling(bounds=(2.0, 1.0)).fit([[0.5, 0.5]], [0])
    # a fitted clone is fresh, and refitting it gives the same temperature
    P = binary_zoo.oof
    proba, y = P.values[:, 0], encode_labels(binary_zoo.y, P.classes)
    fitted = TemperatureScaling().fit(proba, y)
    assert clone(fitted).fit(proba, y).temperature_ == fitted.temperature_


def test_zero_weight_members_never_run(multiclass_zoo):
    P = multiclass_zoo.oof
    weights = np.zeros(P.n_members)
    weights[[1, 3]] = [0.7, 0.3]
    cascade = Cascade(costs=_costs(P), weights=weights).fit(P, multiclass_zoo.y)
    assert cascade.order_ == [P.members[1], P.members[3]]


def test_bad_arguments(multiclass_zoo, regression_zoo, binary_zoo):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    with pytest.raises(ValueError, match="costs are needed"):
        Cascade().fit(P, y)
    with pytest.raises(ValueError, match="costs must be"):
        Cascade(costs=[1.0]).fit(P, y)
    with pytest.raises(ValueError, match="rule='window' is for binary"):
        Cascade(rule="window", costs=_costs(P)).fit(P, y)
    with pytest.raises(ValueError, match="needs class probabilities"):
        Cascade(costs=[1.0] * 5).fit(regression_zoo.oof, regression_zoo.y)
    with pytest.raises(NotFittedError, match="Cascade is not fitted"):
        Cascade().predict(binary_zoo.oof)
    with pytest.raises(NotFittedError, match="Cascade is not fitted"):
        Cascade().stage_probabilities(binary_zoo.oof)
    with pytest.raises(ValueError, match="'rule' parameter of Cascade must be a str among"):
        Cascade(rule="fastest", costs=_costs(P)).fit(P, y)
    with pytest.raises(ValueError, match="'epsilon' parameter of Cascade"):
        Cascade(epsilon=-0.1, costs=_costs(P)).fit(P, y)
