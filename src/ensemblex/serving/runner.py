"""Running a loaded ensemble on a batch of rows, as a whole or as an early-exit cascade."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemblex.ensemble import Ensemble


class ModelRunner:
    """The whole ensemble on every row: ``predict(frame) -> (table, info)``."""

    def __init__(self, model: Ensemble):
        self.model = model

    def predict(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        return self.model.prediction_frame(frame), {}


class CascadeRunner(ModelRunner):
    """Members run cheapest first, on the rows still undecided: a row leaves at the first
    stage whose running weighted mean is confident enough (the cascade's rule and threshold,
    chosen on the run's out-of-fold rows); rows that never are get the full ensemble's
    answer. ``info["exit_stages"]`` counts the rows leaving at each stage (the last: the full
    ensemble).

    Parameters
    ----------
    model : Ensemble
    cascade : ensemblex.cascade.Cascade
        Fitted on the run's out-of-fold predictions of the same members.
    """

    def __init__(self, model: Ensemble, cascade):
        super().__init__(model)
        self.cascade = cascade
        by_column = {}
        for member in model.fitted_members_:
            if len(member.columns) != 1:
                raise ValueError(
                    f"--cascade runs members one at a time; member {member.name!r} yields "
                    f"{len(member.columns)} columns ({member.columns[:3]}...)"
                )
            by_column[member.columns[0]] = member
        missing = [name for name in cascade.order_ if name not in by_column]
        if missing:
            raise ValueError(f"the cascade runs members the model does not hold: {missing}")
        self.stages = [by_column[name] for name in cascade.order_]
        self.n_stages = len(self.stages) + 1  # + the full ensemble

    def predict(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        model, cascade = self.model, self.cascade
        X = model.schema_.check(frame, source="request")
        n, k = len(X), len(model.classes_)
        outputs = np.empty((n, k))
        exit_stage = np.full(n, self.n_stages - 1)
        running = np.zeros((n, k))
        weight = 0.0
        open_rows = np.arange(n)
        # the last member's stage is the cascade's own full mean: rows still open there get
        # the deployed ensemble (its chosen combiner), as without --cascade
        for s, (member, w) in enumerate(zip(self.stages[:-1], cascade.run_weights_[:-1])):
            if not len(open_rows):
                break
            running[open_rows] += w * member.predict(X.iloc[open_rows])[:, 0, :]
            weight += w
            current = running[open_rows] / weight
            margin = cascade._margin(current[:, None, :])[:, 0]
            leaving = margin >= cascade.threshold_
            outputs[open_rows[leaving]] = current[leaving]
            exit_stage[open_rows[leaving]] = s
            open_rows = open_rows[~leaving]
        if len(open_rows):
            outputs[open_rows] = model._predict_outputs(X.iloc[open_rows])
        counts = np.bincount(exit_stage, minlength=self.n_stages)
        return model.output_frame(outputs), {"exit_stages": counts}


def fit_serving_cascade(run_dir, model: Ensemble):
    """The cascade of a run folder: ordered by the run's measured predict times, over the
    members the deployed model uses (weighted as its combiner weighs them when that is a
    weighted mean), threshold chosen on the run's out-of-fold rows to keep accuracy within
    0.1 point of the full mean (:class:`ensemblex.cascade.Cascade`)."""
    from ensemblex.cascade import Cascade
    from ensemblex.combiners.base import mixture_weights
    from ensemblex.runs import RunFolder

    run = RunFolder(run_dir)
    if not run.is_run():
        raise ValueError(f"{run_dir}: --cascade needs a run folder (its out-of-fold rows)")
    if model.classes_ is None:
        raise ValueError(f"{run_dir}: --cascade needs a classification run")
    weights = mixture_weights(model.combiner_)
    if weights is None:
        weights = model.combiner_.used_members().astype(float)
    P = run.oof.predictions.select(model.member_names_)
    costs = run.member_costs()
    costs = np.asarray(costs)[[list(run.oof.predictions.members).index(m) for m in P.members]]
    return Cascade(weights=weights, costs=costs).fit(P, run.oof.y)
