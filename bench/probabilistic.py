"""Benchmark: members that predict a distribution, combined as a calibrated Gaussian mixture.

    .venv/bin/python bench/probabilistic.py            # about 5 minutes on 2 busy cores

California housing, the split of bench/zoo.py's ``load_dataset("california")`` (the same as
bench/uncertainty.py's, so the numbers compare). Members, each predicting a mean and a
variance, cross-fitted on 5 folds by ``EnsembleRegressor``:

- ``deep.0``..``deep.4``: a deep ensemble of 5 MLPs (128, 128) with a Gaussian head trained
  by NLL (``DeepEnsembleRegressor(distribution="gaussian")``);
- ``gbm``, ``gbm_l63``: LightGBM mean plus LightGBM variance on out-of-fold squared
  residuals (``LightGBMGaussian``), two settings.

Combined on the out-of-fold rows by ``MixtureWeights(score="crps")`` (the ensemble's
combiner), ``MixtureWeights(score="nll")`` and the plain equal-weight mixture. Test figures per
member and per combination: CRPS, NLL, 90% interval coverage and width, spread-skill ratio
(sqrt of the mean predicted variance over the RMSE of the mean), the PIT histogram (10 bins)
and its flatness (max / min count). A member's prediction is the mean of its fold models'
means and variances; a combination is the mixture of those members with the combiner's
weights and scale. Writes ``bench/results/probabilistic.json``; folds are kept in
``bench/.cache/probabilistic`` so a rerun resumes.

The point ensemble to beat: the default zoo's point predictions read as a finite ensemble,
CRPS 2.698e4 (bench/uncertainty.py, quoted from the README when its cache is missing).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.combiners.mixture import MixtureWeights
from ensemblex.deep import DeepEnsembleRegressor
from ensemblex.ensemble import EnsembleRegressor
from ensemblex.members.distributional import LightGBMGaussian, default_mean_estimator
from ensemblex.metrics.probabilistic import (
    interval_coverage,
    mixture_crps,
    mixture_nll,
    mixture_spread_skill_ratio,
    pit_histogram,
)
from ensemblex.predictions import Predictions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import CACHE, SEED, load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "probabilistic.json"
POINT_ENSEMBLE_CRPS = 2.698e4  # README, bench/uncertainty.py: the default zoo as a finite ensemble


def members() -> list:
    deep = DeepEnsembleRegressor(
        n_members=5,
        hidden=(128, 128),
        lr=2e-3,
        batch_size=256,
        max_epochs=100,
        patience=10,
        distribution="gaussian",
        random_state=SEED,
    )
    l63 = default_mean_estimator(SEED).set_params(
        n_estimators=1000, learning_rate=0.03, num_leaves=63
    )
    return [
        ("deep", deep),
        LightGBMGaussian("gbm", random_state=SEED),
        LightGBMGaussian("gbm_l63", l63, random_state=SEED),
    ]


def scores(means, variances, y, weights=None) -> dict:
    """Test scores of the mixture of Gaussians ``(means, variances)`` (n, m) with ``weights``."""
    interval = interval_coverage(means, variances, y, 0.9, weights)
    hist = pit_histogram(means, variances, y, 10, weights)
    return {
        "crps": mixture_crps(means, variances, y, weights),
        "nll": mixture_nll(means, variances, y, weights),
        "coverage_90": interval.coverage,
        "width_90": interval.mean_width,
        "spread_skill": mixture_spread_skill_ratio(means, variances, y, weights),
        "pit_max_over_min": float(hist.max() / max(hist.min(), 1)),
        "pit_histogram": hist.tolist(),
    }


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ds = load_dataset("california")
    X, y = ds.train.drop(columns=ds.target), ds.train[ds.target].to_numpy(dtype=float)
    X_test = ds.test.drop(columns=ds.target)
    y_test = ds.test[ds.target].to_numpy(dtype=float)
    start = time.perf_counter()
    model = EnsembleRegressor(
        members=members(),
        combiner=MixtureWeights(score="crps", random_state=SEED),
        cv=5,
        random_state=SEED,
        n_jobs=2,
        work_dir=CACHE / "probabilistic",
    ).fit(X, y)
    fit_seconds = time.perf_counter() - start
    P_oof = model.oof_
    # every member's fold models on the test rows (the ensemble deploys only those the
    # combiner uses; these are all of them, for the per-member rows)
    folds = model.crossfit_fold_predictions(X_test)
    values = np.mean([P.values for P in folds], axis=0)
    P_test = Predictions(values, P_oof.members, "regression", outputs=P_oof.outputs)
    means, variances = values[:, :, 0], values[:, :, 1]

    rows = {
        name: scores(means[:, [j]], variances[:, [j]], y_test)
        for j, name in enumerate(P_oof.members)
    }
    deep = [j for j, name in enumerate(P_oof.members) if name.startswith("deep.")]
    rows["deep ensemble (5 MLPs, equal mixture)"] = scores(
        means[:, deep], variances[:, deep], y_test
    )
    rows["plain mixture (equal weights)"] = scores(means, variances, y_test)
    combiners = {
        "MixtureWeights(crps)": model.combiner_,
        "MixtureWeights(nll)": MixtureWeights(score="nll", random_state=SEED).fit(
            P_oof, model.oof_labels_
        ),
        "MixtureWeights(crps, bias)": MixtureWeights(
            score="crps", fit_bias=True, random_state=SEED
        ).fit(P_oof, model.oof_labels_),
    }
    fitted = {}
    for name, combiner in combiners.items():
        m, v, w = combiner.components(P_test)
        rows[name] = scores(m, v, y_test, w)
        # the ensemble's own output: the mixture's two moments, read as one Gaussian
        moments = combiner.predict_folds(folds)
        rows[name]["crps_of_moments_gaussian"] = mixture_crps(
            moments[:, [0]], moments[:, [1]], y_test
        )
        fitted[name] = {
            "weights": dict(zip(P_oof.members, np.round(combiner.weights_, 4).tolist())),
            "scale": combiner.scale_,
            "bias": combiner.bias_,
        }
    # the deployed ensemble's own output equals its combiner's on every member's folds
    mean, var = model.predict_distribution(X_test)
    expected = combiners["MixtureWeights(crps)"].predict_folds(folds)
    np.testing.assert_allclose(np.stack([mean, var], axis=1), expected, rtol=1e-9)
    result = {
        "dataset": "california",
        "n_train": len(X),
        "n_test": len(X_test),
        "fit_seconds": fit_seconds,
        "member_fit_seconds": {m: s["fit"] for m, s in model.member_seconds_.items()},
        "point_ensemble_crps": POINT_ENSEMBLE_CRPS,
        "point_ensemble_crps_source": "README (bench/uncertainty.py; its cache is not rebuilt)",
        "rows": rows,
        "combiners": fitted,
        "test_rmse_of_ensemble_mean": float(np.sqrt(np.mean((mean - y_test) ** 2))),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    table = pd.DataFrame(rows).T.drop(columns=["pit_histogram"])
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print(table)
    for name, found in fitted.items():
        print(name, found)
    print(f"point ensemble CRPS (README): {POINT_ENSEMBLE_CRPS:.4g}; fit {fit_seconds:.0f} s")


if __name__ == "__main__":
    main()
