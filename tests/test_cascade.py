import numpy as np
import pytest

from ensemblex.cascade import Cascade
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
    from ensemblex import Predictions

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


def test_window_cascade_keeps_coverage_at_risk(binary_zoo):
    P, y = binary_zoo.oof, binary_zoo.y
    weights = np.ones(P.n_members)
    cascade = Cascade(
        rule="window",
        target="coverage_at_risk",
        risk=0.05,
        epsilon=0.0,
        costs=_costs(P),
        weights=weights,
    ).fit(P, y)
    out = cascade.predict(P)
    codes = encode_labels(y, P.classes)
    assert coverage_at_risk(out.proba, codes, 0.05) >= cascade.full_coverage_at_risk_
    assert cascade.chosen_.relative_cost <= 1.0


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
    with pytest.raises(RuntimeError, match="not fitted"):
        Cascade().predict(binary_zoo.oof)
