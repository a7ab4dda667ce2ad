"""MLflow: log a run folder (parameters, scores, report) and its model as a pyfunc.

The pyfunc flavour is MLflow's *loader module* kind, not a pickled ``PythonModel``: the logged
model holds the saved ensemble folder as it is (:meth:`ensemblex.ensemble.Ensemble.save`) under
``data/``, and MLflow calls :func:`_load_pyfunc` on it, which loads it with
:meth:`~ensemblex.ensemble.Ensemble.load`: every file's digest is checked and no code from
the files runs: MLflow writes no serialised Python object for this flavour.

MLflow is an optional dependency (``pip install 'ensemblex[mlflow]'``), imported only when one
of these functions runs. Everything logs to the active tracking URI (``MLFLOW_TRACKING_URI`` or
:func:`mlflow.set_tracking_uri`).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

LOADER_MODULE = "ensemblex.mlflow"
INSTALL_HINT = "pip install 'ensemblex[mlflow]'"
# MLflow's rule for parameter and metric names (mlflow.utils.validation): word characters,
# periods, dashes, spaces, colons and slashes, at most 250 characters.
_NOT_ALLOWED_IN_NAMES = re.compile(r"[^\w.\- :/]")
_MAX_NAME = 250
# Parameters are for reading in the UI; long values (a zoo given as a list of estimators, many
# dropped columns) are cut well below MLflow's 6,000-character limit.
_MAX_PARAM = 500


def _mlflow():
    """The ``mlflow`` package, or an ImportError that says how to install it."""
    try:
        import mlflow
        import mlflow.pyfunc  # a submodule that ``import mlflow`` may not load
    except ImportError as exc:
        raise ImportError(f"ensemblex.mlflow needs MLflow: {INSTALL_HINT}") from exc
    return mlflow


# ---------------------------------------------------------------- the pyfunc flavour
class EnsemblePyfunc:
    """What MLflow's ``pyfunc.load_model`` wraps: a loaded ensemble and its ``predict``.

    ``mlflow.pyfunc.load_model(uri).get_raw_model()`` is the
    :class:`~ensemblex.ensemble.Ensemble`.

    Parameters
    ----------
    model : Ensemble
    """

    def __init__(self, model):
        self.model = model

    def get_raw_model(self):
        """The :class:`~ensemblex.ensemble.Ensemble` (MLflow's ``PyFuncModel.get_raw_model``)."""
        return self.model

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Predictions as :meth:`~ensemblex.ensemble.Ensemble.prediction_frame` makes them:
        ``prediction``, then one probability column per class for classifiers.

        Parameters
        ----------
        model_input : DataFrame
            Rows with the training columns (MLflow has already checked them against the
            signature, when the model has one).
        params : dict, optional
            Accepted for MLflow's protocol; the ensemble takes none.
        """
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.model.prediction_frame(model_input)


def _load_pyfunc(data_path: str) -> EnsemblePyfunc:
    """MLflow's entry point for ``loader_module="ensemblex.mlflow"``: the saved ensemble under
    the logged model's ``data/`` folder, verified on load (digests; a signing key from
    ``ENSEMBLEX_SIGNING_KEY`` is required when set)."""
    from ensemblex.ensemble import Ensemble

    return EnsemblePyfunc(Ensemble.load(data_path))


def save_model(
    run_or_model_dir,
    path,
    *,
    signature: bool = True,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    input_example: pd.DataFrame | None = None,
    key: str | bytes | None = None,
) -> Path:
    """Save a run's ensemble as an MLflow model folder (pyfunc flavour, no pickle).

    Parameters
    ----------
    run_or_model_dir : path
        A run folder written by ``ensemblex run`` (its ``model/`` is used) or a saved ensemble.
    path : path
        The MLflow model folder to write; it must not exist yet.
    signature : bool, default True
        Record an input signature from the training schema (feature columns required, ID-like
        columns optional) and an output signature (``prediction`` and class probabilities).
    pip_requirements, extra_pip_requirements : list of str, optional
        As for :func:`mlflow.pyfunc.save_model`; by default ``ensemblex`` and the versions of
        the libraries the model was saved with.
    metadata : dict, optional
        Free-form metadata for the ``MLmodel`` file.
    input_example : DataFrame, optional
        A few rows with the training columns, stored with the model (MLflow predicts them
        once to check, and ``mlflow models serve`` documents them as a request body).
    key : str or bytes, optional
        Signing key to verify the ensemble with (default ``ENSEMBLEX_SIGNING_KEY``).

    Returns
    -------
    Path
        ``path``.
    """
    mlflow = _mlflow()
    source, model = _verified_model(run_or_model_dir, key)
    path = Path(path)
    if path.exists():
        raise ValueError(f"{path}: already exists; choose a new folder for the MLflow model")
    arguments = _pyfunc_arguments(
        source, model, signature, pip_requirements, extra_pip_requirements, metadata
    )
    with _without_example_warning(input_example):
        mlflow.pyfunc.save_model(path=str(path), input_example=input_example, **arguments)
    # MLflow copies the folder with shutil.copytree; the copy must pass the same checks
    # (listed files only, digests, no links) that loading it for serving will apply.
    from ensemblex.ensemble import Ensemble

    try:
        Ensemble.load(path / "data" / source.name, key=key)
    except ValueError:
        shutil.rmtree(path, ignore_errors=True)  # ours: the folder did not exist before
        raise
    return path


def log_model(
    run_or_model_dir,
    name: str = "model",
    *,
    signature: bool = True,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict | None = None,
    input_example: pd.DataFrame | None = None,
    registered_model_name: str | None = None,
    key: str | bytes | None = None,
):
    """Log a run's ensemble as an MLflow model (pyfunc flavour, no pickle) to the active run.

    Parameters
    ----------
    run_or_model_dir : path
        A run folder written by ``ensemblex run`` or a saved ensemble.
    name : str, default "model"
        The logged model's name (its artifact path in the run).
    registered_model_name : str, optional
        Also register it in the model registry under this name.
    signature, pip_requirements, extra_pip_requirements, metadata, input_example, key
        As for :func:`save_model`.

    Returns
    -------
    mlflow.models.model.ModelInfo
        Its ``model_uri`` loads with :func:`mlflow.pyfunc.load_model`.
    """
    _mlflow()
    source, model = _verified_model(run_or_model_dir, key)
    return _log_verified_model(
        source,
        model,
        name,
        signature=signature,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        input_example=input_example,
        registered_model_name=registered_model_name,
    )


def _log_verified_model(source: Path, model, name: str, *, signature=True, **options):
    mlflow = _mlflow()
    arguments = _pyfunc_arguments(
        source,
        model,
        signature,
        options.pop("pip_requirements", None),
        options.pop("extra_pip_requirements", None),
        options.pop("metadata", None),
    )
    with _without_example_warning(options.get("input_example")):
        return mlflow.pyfunc.log_model(name=name, **arguments, **options)


@contextmanager
def _without_example_warning(input_example):
    """Silence MLflow's advice to give an input example when none was given: the signature
    comes from the training schema, which is what the example would be used to infer."""
    with warnings.catch_warnings():
        if input_example is None:
            warnings.filterwarnings("ignore", message=r"(?s).*input example was not provided")
        yield


def _verified_model(run_or_model_dir, key) -> tuple[Path, object]:
    """The saved ensemble's folder and the ensemble, loaded (so verified) before anything is
    written: a damaged model is refused here, not when it is served."""
    from ensemblex.ensemble import Ensemble
    from ensemblex.runs import model_dir

    given = Path(run_or_model_dir)
    if not given.is_dir():
        raise ValueError(f"{given}: not a folder; expected a run folder or a saved ensemble")
    source = model_dir(given)
    if not (source / "manifest.json").is_file():
        raise ValueError(
            f"{given}: neither a run folder written by `ensemblex run` (no model/) nor a saved "
            "ensemble (no manifest.json)"
        )
    return source, Ensemble.load(source, key=key)


def _pyfunc_arguments(
    source: Path, model, signature: bool, pip_requirements, extra_pip_requirements, metadata
) -> dict:
    if pip_requirements is None:
        pip_requirements = _default_requirements(source)
    return {
        "loader_module": LOADER_MODULE,
        "data_path": str(source),
        "signature": model_signature(model) if signature else None,
        "pip_requirements": pip_requirements,
        "extra_pip_requirements": extra_pip_requirements,
        "metadata": {"ensemblex_task": model.task_, **(metadata or {})},
    }


def _default_requirements(source: Path) -> list[str]:
    """``ensemblex`` and the library versions the manifest records (the saved files are in
    those libraries' formats: skops, LightGBM text, XGBoost JSON, CatBoost cbm)."""
    from ensemblex import __version__

    versions = json.loads((source / "manifest.json").read_text()).get("versions", {})
    requirements = [f"ensemblex=={versions.get('ensemblex', __version__)}"]
    requirements += [f"{name}=={v}" for name, v in sorted(versions.items()) if name != "ensemblex"]
    return requirements


def model_signature(model):
    """An MLflow signature from an ensemble's training schema.

    Inputs: every feature column (required) and every ID-like column the schema dropped
    (optional: members that read raw columns may use them), typed by their training dtype;
    integers are ``long``, so a request must send them as integers. Outputs: ``prediction``
    and, for classifiers, one ``double`` column per class.

    Parameters
    ----------
    model : Ensemble
        A fitted or loaded ensemble.

    Returns
    -------
    mlflow.models.ModelSignature
    """
    _mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    schema = model.schema_
    required = {c: True for c in schema.features} | {c: False for c in schema.dropped}
    inputs = [
        ColSpec(_input_type(schema, column), str(column), required=needed)
        for column, needed in required.items()
    ]
    # The output columns are whatever prediction_frame names them, read off one prediction
    # on a made-up row of training values rather than spelled out here a second time.
    # Members that read raw columns (prefitted pipelines, text) may refuse a made-up row with
    # any exception: the output schema is documentation only (MLflow does not enforce it), so
    # the model is still logged, without one.
    try:
        output = model.prediction_frame(_training_like_row(schema))
    except Exception as exc:
        log.warning("no output signature: a made-up training-like row failed to predict (%s)", exc)
        return ModelSignature(inputs=Schema(inputs))
    outputs = [ColSpec(_dtype_name(output[c].dtype), str(c)) for c in output.columns]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _training_like_row(schema) -> pd.DataFrame:
    """One row of feature values seen in training: each numeric column's minimum, each
    categorical column's first category (missing where the schema kept none)."""
    row = {}
    for column in schema.features:
        dtype = schema.dtypes.get(str(column), "float64")
        if str(column) in schema.ranges:
            value = schema.ranges[str(column)][0]
            if not _dtype_is_numeric(dtype):
                value = f"{value:g}"
        elif schema.categories.get(str(column)):
            value = schema.categories[str(column)][0]  # kept as text: "True" for a boolean
            if dtype == "bool":
                value = value == "True"
        else:
            value = None
        try:
            row[column] = pd.Series([value]).astype(dtype)
        except (TypeError, ValueError):
            row[column] = pd.Series([value])
    return pd.DataFrame(row)


def _input_type(schema, column) -> str:
    if column in schema.categorical and schema.dtypes.get(str(column)) != "bool":
        return "string"  # categories compare as text (one-hot, ordinal codes)
    if column in schema.numeric and not _dtype_is_numeric(schema.dtypes.get(str(column))):
        return "string"  # numbers written as text in training: the model parses them
    return _dtype_name(schema.dtypes.get(str(column), "float64"))


def _dtype_is_numeric(name: str | None) -> bool:
    try:
        return name is not None and pd.api.types.is_numeric_dtype(pd.api.types.pandas_dtype(name))
    except TypeError:
        return False


def _dtype_name(dtype) -> str:
    """The MLflow column type of a pandas/numpy dtype (or its name)."""
    try:
        dtype = pd.api.types.pandas_dtype(dtype)
    except TypeError:
        return "string"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


# ---------------------------------------------------------------- a whole run
def log_run(
    run_dir,
    *,
    run_name: str | None = None,
    artifact_path: str = "model",
    log_model: bool = True,
) -> str:
    """Log a run folder written by ``ensemblex run`` as an MLflow run.

    Parameters (settings, chosen combiner, row and column counts), metrics (the chosen
    combiner's and the best single member's CV and test scores, then ``cv_score.<model>`` and
    ``test_score.<model>`` for every leaderboard row, names reduced to the characters MLflow
    allows), ``report.html`` and ``leaderboard.json`` as artifacts and, with ``log_model``, the
    ensemble as a pyfunc model (:func:`log_model`). Inside an active run, a nested run.

    Parameters
    ----------
    run_dir : path
        The run folder (``--out`` of ``ensemblex run``).
    run_name : str, optional
        The MLflow run's name (default: MLflow picks one).
    artifact_path : str, default "model"
        The logged model's name in the run.
    log_model : bool, default True
        Whether to log the model too.

    Returns
    -------
    str
        The MLflow run id.
    """
    mlflow = _mlflow()
    from ensemblex import __version__
    from ensemblex.runs import LEADERBOARD, RunFolder

    run = RunFolder(run_dir)
    if not run.root.is_dir():
        raise ValueError(f"{run.root}: not a folder; expected a run folder of `ensemblex run`")
    summary = run.summary  # a ValueError naming the file if it is missing or malformed
    model = None
    if log_model:  # verified before the MLflow run starts: a damaged model logs nothing
        source, model = _verified_model(run.root, None)
    params, metrics = run_params(summary), run_metrics(summary)
    with mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None) as active:
        mlflow.set_tags(
            {"ensemblex.version": __version__, "ensemblex.run_dir": str(run.root.resolve())}
        )
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(run.root / LEADERBOARD))
        if run.report_path.is_file():  # a run whose report failed still has its scores
            mlflow.log_artifact(str(run.report_path))
        if model is not None:
            _log_verified_model(source, model, artifact_path)
        return active.info.run_id


def run_params(summary: dict) -> dict[str, str]:
    """MLflow parameters of a run's ``leaderboard.json``: its settings and sizes.

    >>> run_params({"task": "binary", "rows": {"train": 80, "test": 20},
    ...             "leaderboard": [{"model": "lgbm", "kind": "member", "cv_score": 0.3}]})
    {'task': 'binary', 'rows_train': '80', 'rows_test': '20', 'members': 'lgbm', 'n_members': '1'}
    """
    keys = (
        "data", "target", "task", "metric", "greater_is_better", "zoo", "folds", "test_size",
        "seed", "backend", "chosen",
    )  # fmt: skip
    params = {k: summary[k] for k in keys if k in summary}
    for split, count in (summary.get("rows") or {}).items():
        params[f"rows_{split}"] = count
    for kind, columns in (summary.get("columns") or {}).items():
        params[f"n_{kind}_columns"] = len(columns)
    if summary.get("dropped_columns"):
        params["dropped_columns"] = ", ".join(map(str, summary["dropped_columns"]))
    members = [r["model"] for r in summary["leaderboard"] if r["kind"] == "member"]
    params["members"] = ", ".join(members)
    params["n_members"] = len(members)
    return {_name(k): _cut(str(v)) for k, v in params.items()}


def run_metrics(summary: dict) -> dict[str, float]:
    """MLflow metrics of a run's ``leaderboard.json``.

    ``cv_score``/``test_score`` are the chosen combiner's (absent when the run chose no
    candidate, as with a fixed combiner); ``best_member.cv_score``/``best_member.test_score``
    the member with the best CV score; then ``cv_score.<model>``/``test_score.<model>`` for
    every row. Missing scores are left out.

    >>> run_metrics({"greater_is_better": False, "leaderboard": [
    ...     {"model": "a+b", "kind": "member", "cv_score": 0.3, "test_score": 0.4},
    ...     {"model": "mean", "kind": "combiner (chosen)", "cv_score": 0.2, "test_score": None}]})
    {'cv_score': 0.2, 'best_member.cv_score': 0.3, 'best_member.test_score': 0.4, \
'cv_score.a_b': 0.3, 'test_score.a_b': 0.4, 'cv_score.mean': 0.2}
    """
    rows = summary["leaderboard"]
    metrics: dict[str, float] = {}

    def add(name: str, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = float(value)

    chosen = [r for r in rows if r["kind"] == "combiner (chosen)"]
    if chosen:
        add("cv_score", chosen[0]["cv_score"])
        add("test_score", chosen[0].get("test_score"))
    members = [r for r in rows if r["kind"] == "member"]
    if members:
        sign = 1.0 if summary.get("greater_is_better") else -1.0
        best = max(members, key=lambda r: sign * r["cv_score"])
        add("best_member.cv_score", best["cv_score"])
        add("best_member.test_score", best.get("test_score"))
    used = set(metrics)
    for row in rows:
        model = _name(row["model"], limit=_MAX_NAME - len("test_score.") - 4)
        for suffix in ("", *(f"_{i}" for i in range(2, 1000))):  # names equal once sanitised
            if f"cv_score.{model}{suffix}" not in used:
                break
        for score in ("cv_score", "test_score"):
            used.add(f"{score}.{model}{suffix}")
            add(f"{score}.{model}{suffix}", row.get(score))
    return metrics


def _name(text: str, limit: int = _MAX_NAME) -> str:
    return _NOT_ALLOWED_IN_NAMES.sub("_", str(text))[:limit]


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 1] + "…"
