"""Save fitted combiners as JSON (plus skops files for stacking meta-models), never pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ensemblex.combiners.auto import AutoCombiner
from ensemblex.combiners.averaging import BestSingle, Mean
from ensemblex.combiners.greedy import GreedySelection
from ensemblex.combiners.stacking import Stacking
from ensemblex.combiners.weighted import Weighted
from ensemblex.metrics import Metric, get_metric

_CLASSES = {
    c.__name__: c for c in (Mean, BestSingle, Weighted, GreedySelection, Stacking, AutoCombiner)
}
# Fitted attributes kept per class (arrays become lists); meta-models and nested combiners
# are handled separately.
_FITTED = {
    "Mean": ["weights_"],
    "BestSingle": ["weights_", "best_index_", "best_member_", "member_scores_"],
    "Weighted": ["weights_", "converged_"],
    "GreedySelection": ["weights_", "indices_", "trajectory_", "best_iteration_"],
    "Stacking": [
        "kept_members_",
        "dropped_members_",
        "condition_number_before_",
        "condition_number_after_",
        "meta_learners_",
        "blend_weights_",
        "meta_errors_",
        "_kept",
        "_top",
    ],
    "AutoCombiner": ["method_", "scores_", "fit_seconds_"],
}


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Metric):
        return value.name
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def combiner_state(combiner, folder: Path, prefix: str = "combiner") -> tuple[dict, list[Path]]:
    """A JSON-able description of a fitted combiner, and the extra files written to ``folder``."""
    import skops.io as sio

    name = type(combiner).__name__
    if name not in _CLASSES:
        raise TypeError(f"cannot save a combiner of type {name}; expected one of {list(_CLASSES)}")
    params = {
        k: _json(v)
        for k, v in combiner.get_params(deep=False).items()
        if k != "candidates" or isinstance(v, str | list)
    }
    state = {
        "class": name,
        "params": params,
        "members": list(combiner.members_),
        "task": combiner.task_,
        "classes": None if combiner.classes_ is None else _json(combiner.classes_),
        "n_outputs": combiner.n_outputs_,
        "metric": combiner.metric_.name,
        "fitted": {attr: _json(getattr(combiner, attr)) for attr in _FITTED[name]},
    }
    files: list[Path] = []
    if name == "Stacking":
        state["meta_models"] = []
        for i, model in enumerate(combiner.meta_models_):
            path = folder / f"{prefix}_meta{i}.skops"
            sio.dump(model, path)
            files.append(path)
            state["meta_models"].append(path.name)
    if name == "AutoCombiner":
        state["params"].pop("candidates", None)
        state["chosen"], more = combiner_state(combiner.combiner_, folder, prefix + "_chosen")
        files += more
    return state, files


def load_combiner(state: dict, folder: Path):
    """Rebuild a fitted combiner from :func:`combiner_state`'s description."""
    from ensemblex.members.families import load_skops

    cls = _CLASSES.get(state.get("class"))
    if cls is None:
        raise ValueError(f"{folder}: unknown combiner class {state.get('class')!r}")
    combiner = cls(**state["params"])
    combiner.members_ = tuple(state["members"])
    combiner.task_ = state["task"]
    combiner.classes_ = None if state["classes"] is None else np.asarray(state["classes"])
    combiner.n_outputs_ = state["n_outputs"]
    combiner.metric_ = get_metric(state["metric"], state["task"])
    combiner._fitted_on_names = True
    for attr, value in state["fitted"].items():
        setattr(
            combiner,
            attr,
            np.asarray(value)
            if isinstance(value, list)
            and attr in ("weights_", "trajectory_", "blend_weights_", "meta_errors_")
            else value,
        )
    if cls is Stacking:
        combiner.meta_models_ = [load_skops(folder / f) for f in state["meta_models"]]
    if cls is AutoCombiner:
        combiner.combiner_ = load_combiner(state["chosen"], folder)
    return combiner
