"""Running a loaded ensemble on a batch of rows, as a whole or as an early-exit cascade."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemblex.ensemble import Ensemble
from ensemblex.predictions import Predictions


class ModelRunner:
    """The whole ensemble on every row: ``predict(frame) -> (table, info)``."""

    def __init__(self, model: Ensemble):
        self.model = model

    def predict(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        return self.model.prediction_frame(frame), {}


class CascadeRunner(ModelRunner):
    """Members run cheapest first, on the rows still undecided: a row leaves at the first
    stage whose running weighted mean is confident enough (the cascade's rule and threshold,
    chosen on the run's out-of-fold rows); rows that never are get the deployed ensemble's
    answer, its combiner applied to the members' predictions (those already made are not
    made again). ``info["exit_stages"]`` counts the rows leaving at each stage (the last:
    the full ensemble).

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
        self.rest = [m for m in model.fitted_members_ if m.columns[0] not in cascade.order_]
        self.n_stages = len(self.stages) + 1  # + the full ensemble
        self.position = {name: j for j, name in enumerate(model.member_names_)}

    def predict(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        model, cascade = self.model, self.cascade
        if not np.isfinite(cascade.threshold_):  # no threshold kept the accuracy
            table, _ = super().predict(frame)
            counts = np.zeros(self.n_stages, dtype=int)
            counts[-1] = len(table)
            return table, {"exit_stages": counts}
        X = model.schema_.check(frame, source="request")
        n, k = len(X), len(model.classes_)
        n_folds = len(model.fitted_members_[0].folds)
        # every fold model's predictions, filled as members run (constants where they do not)
        folds = np.full((n_folds, n, len(model.member_names_), k), 1.0 / k)
        outputs = np.empty((n, k))
        exit_stage = np.full(n, self.n_stages - 1)
        running = np.zeros((n, k))
        weight = 0.0
        open_rows = np.arange(n)
        for s, (member, w) in enumerate(zip(self.stages, cascade.run_weights_)):
            if not len(open_rows):
                break
            made = member.predict_folds(X.iloc[open_rows])
            column = self.position[member.columns[0]]
            for j, values in enumerate(made):
                folds[j][open_rows, column] = values[:, 0]
            if s == len(self.stages) - 1:
                break  # the last stage is the full ensemble's
            running[open_rows] += w * (sum(made) / n_folds)[:, 0, :]
            weight += w
            current = running[open_rows] / weight
            margin = cascade._margin(current[:, None, :])[:, 0]
            leaving = margin >= cascade.threshold_
            outputs[open_rows[leaving]] = current[leaving]
            exit_stage[open_rows[leaving]] = s
            open_rows = open_rows[~leaving]
        if len(open_rows):
            rows = X.iloc[open_rows]
            for member in self.rest:  # deployed members the cascade does not run
                column = self.position[member.columns[0]]
                for j, values in enumerate(member.predict_folds(rows)):
                    folds[j][open_rows, column] = values[:, 0]
            P = [
                Predictions(
                    folds[j][open_rows], model.member_names_, model.task_, classes=model.classes_
                )
                for j in range(n_folds)
            ]
            outputs[open_rows] = model.combiner_.predict_folds(P, X=model.combiner_features(rows))
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


def probe_rows(model: Ensemble, n: int = 256, random_state: int = 0) -> pd.DataFrame:
    """Made-up rows of the training schema: numbers drawn across each column's training
    range (some missing), categories drawn from the training ones (some missing, some
    unknown). For checking a faster form of a member against the member."""
    rng = np.random.default_rng(random_state)
    schema = model.schema_
    frame = {}
    for col in schema.numeric:
        low, high = (schema.ranges.get(col) or [0.0, 1.0])[:2]
        if not (np.isfinite(low) and np.isfinite(high)):
            low, high = 0.0, 1.0
        values = rng.uniform(low, high, n)
        values[rng.random(n) < 0.05] = np.nan
        frame[col] = values
    for col in schema.categorical:
        known = list(schema.categories.get(col) or []) or ["a"]
        cells = [known[i] for i in rng.integers(0, len(known), n)]
        for i in np.flatnonzero(rng.random(n) < 0.05):
            cells[i] = None
        cells[-1] = "(never seen in training)"
        frame[col] = pd.Series(cells, dtype=object)
    return schema.check(pd.DataFrame(frame), source="probe rows")


def compile_members(model: Ensemble, treelite: bool = True) -> list[str]:
    """Give the model's members faster twins for a few rows where those predict the probe
    rows as the members do: Treelite for trees (:mod:`ensemblex.members.compiled_trees`,
    with ``treelite``), numpy for nearest neighbours
    (:mod:`ensemblex.members.compiled_neighbors`); returns the members switched."""
    from ensemblex.members.compiled_neighbors import compile_neighbors
    from ensemblex.members.compiled_trees import compile_member

    compilers = [compile_member, compile_neighbors] if treelite else [compile_neighbors]
    probe = probe_rows(model)
    switched = []
    for member in model.fitted_members_:
        for compile_one in compilers:
            if all([compile_one(fold, probe) for fold in member.folds]):
                switched.append(member.name)
                break
            for fold in member.folds:  # all folds of a member or none
                fold.__dict__.pop("twin_", None)
    return switched
