"""The built-in zoos (``default``, ``fast``, ``deep``) and turning estimators into members."""

from __future__ import annotations

import pandas as pd
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor

from ensemblex.members.base import Member
from ensemblex.members.registry import family_for

ZOOS = ("default", "fast", "deep")


def member(name: str, estimator, encoding: str | None = None) -> Member:
    """Wrap an unfitted estimator in the member family of its library.

    Parameters
    ----------
    name : str
    estimator : estimator
        scikit-learn, LightGBM, XGBoost, CatBoost or an :mod:`ensemblex.deep` estimator.
    encoding : {"native", "onehot", "ordinal"}, optional
        Default: GBDTs read categorical codes natively; tree ensembles ordinal codes; the
        rest (networks included) one-hot. See :mod:`ensemblex.preprocessing`.
    """
    return family_for(estimator)(name, estimator, encoding)


def resolve_members(members, task: str, random_state: int = 0) -> list[Member]:
    """Turn ``members`` (a zoo name, or a list of estimators, ``(name, estimator)`` pairs or
    :class:`~ensemblex.members.base.Member`) into a list of members with unique names."""
    if isinstance(members, str):
        if members not in ZOOS:
            raise ValueError(f"members must be one of {ZOOS} or a list, however: {members!r}")
        return zoo(members, task, random_state)
    specs = []
    for item in members:
        if isinstance(item, Member):
            specs.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            specs.append(member(str(item[0]), item[1]))
        else:
            specs.append(member(type(item).__name__, item))
    names = [s.name for s in specs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"members have duplicate names {dups}; pass (name, estimator) pairs")
    if not specs:
        raise ValueError("members is empty; pass a zoo name or at least one estimator")
    return specs


def zoo(name: str, task: str, random_state: int = 0) -> list[Member]:
    """The built-in zoos.

    ``fast``: LightGBM, a random forest, a linear model and kNN (for tests and quick looks).
    ``default``: LightGBM at three settings, XGBoost at two depths, CatBoost, a random forest,
    extra trees, a linear model, kNN and an MLP.
    ``deep`` (needs the ``torch`` extra): ``default`` plus a deep ensemble of 5 MLPs and TabM
    (k = 32 heads); each network's members become columns ``mlp_ensemble.0`` ... and
    ``tabm.0`` ... ``tabm.31`` of the predictions array.
    """
    if name == "deep":
        return zoo("default", task, random_state) + deep_members(task, random_state)
    reg = task == "regression"
    seed = random_state
    from lightgbm import LGBMClassifier, LGBMRegressor

    lgbm = LGBMRegressor if reg else LGBMClassifier

    def gbm(**kw):
        return lgbm(random_state=seed, verbose=-1, n_jobs=1, **kw)

    forest = RandomForestRegressor if reg else RandomForestClassifier
    linear = Ridge(alpha=1.0) if reg else LogisticRegression(C=1.0, max_iter=1000)
    # brute force: on one-hot rows a KD-tree answers 10,000 queries in 0.80 s of CPU against
    # 0.36 s (churn), and nothing but the rows is saved
    knn = (KNeighborsRegressor if reg else KNeighborsClassifier)(
        n_neighbors=25, weights="distance", algorithm="brute"
    )
    if name == "fast":
        members = [
            ("lgbm", gbm(n_estimators=100, learning_rate=0.1, num_leaves=15)),
            ("random_forest", forest(n_estimators=60, min_samples_leaf=2, random_state=seed)),
            ("linear", linear),
            ("knn", knn),
        ]
    else:
        from catboost import CatBoostClassifier, CatBoostRegressor
        from xgboost import XGBClassifier, XGBRegressor

        xgb = XGBRegressor if reg else XGBClassifier
        cat = CatBoostRegressor if reg else CatBoostClassifier
        extra = ExtraTreesRegressor if reg else ExtraTreesClassifier
        mlp = MLPRegressor if reg else MLPClassifier
        members = [
            ("lgbm_l31_lr05", gbm(n_estimators=300, learning_rate=0.05, num_leaves=31)),
            ("lgbm_l15_lr1", gbm(n_estimators=150, learning_rate=0.1, num_leaves=15)),
            (
                "lgbm_l63_lr03",
                gbm(n_estimators=300, learning_rate=0.03, num_leaves=63, colsample_bytree=0.7),
            ),
            (
                "xgb_d4",
                xgb(n_estimators=200, learning_rate=0.1, max_depth=4, n_jobs=1, random_state=seed),
            ),
            (
                "xgb_d7",
                xgb(
                    n_estimators=200,
                    learning_rate=0.05,
                    max_depth=7,
                    subsample=0.8,
                    n_jobs=1,
                    random_state=seed,
                ),
            ),
            (
                "catboost_d6",
                cat(
                    iterations=300,
                    depth=6,
                    learning_rate=0.08,
                    random_seed=seed,
                    verbose=0,
                    thread_count=1,
                    allow_writing_files=False,
                ),
            ),
            # Leaves of 3 rows and 100 extra trees cost nothing and shrink the saved forests
            # (churn, 5-fold OOF log-loss: forest .363 -> .343 at leaves of 1 -> 3, 28 -> 18 MB
            # per fold; extra trees .3480 -> .3481 at 150 -> 100 trees, 36 -> 24 MB)
            (
                "random_forest",
                forest(
                    n_estimators=150, max_features="sqrt", min_samples_leaf=3, random_state=seed
                ),
            ),
            ("extra_trees", extra(n_estimators=100, min_samples_leaf=2, random_state=seed)),
            ("linear", linear),
            ("knn", knn),
            (
                "mlp",
                mlp(
                    hidden_layer_sizes=(64, 32),
                    early_stopping=True,
                    max_iter=300,
                    random_state=seed,
                ),
            ),
        ]
    return [member(n, est) for n, est in members]


def table_zoo(
    name: str,
    task: str,
    X: pd.DataFrame,
    random_state: int = 0,
    graph=None,
    node_column: str = "node",
) -> list[Member]:
    """The zoo ``name`` for what the table holds.

    - with a ``graph`` (:class:`ensemblex.graphs.Graph`; the rows are its nodes): the graph
      zoo, :func:`ensemblex.members.graph.graph_members` (3 seeds per architecture for
      ``fast``, 10 otherwise);
    - with free-text columns (:func:`ensemblex.members.text.text_columns`): the text zoo,
      :func:`ensemblex.members.text.text_members` (TF-IDF members only for ``fast``), plus
      the tabular zoo ``name`` when other feature columns remain (a mixed table);
    - otherwise the tabular zoo, :func:`zoo`.

    Parameters
    ----------
    name : {"default", "fast", "deep"}
    task : {"regression", "binary", "multiclass"}
    X : DataFrame
        The table's feature columns (target and split columns left out).
    random_state : int
    graph : Graph, optional
    node_column : str, default "node"
        With a graph: the column of ``X`` holding each row's node id.
    """
    if graph is not None:
        from ensemblex.members.graph import graph_members

        seeds = 3 if name == "fast" else 10
        return graph_members(graph, task, random_state, n_seeds=seeds, node_column=node_column)
    from ensemblex.members.text import text_columns, text_members

    texts = text_columns(X)
    if not texts:
        return zoo(name, task, random_state)
    members = text_members(task, random_state, columns=texts, embeddings=name != "fast")
    others = X.drop(columns=texts)
    if others.shape[1] and has_tabular_features(others):
        members += zoo(name, task, random_state)
    return members


def has_tabular_features(X: pd.DataFrame) -> bool:
    """Whether any column of ``X`` is a feature the tabular encodings read (not ID-like)."""
    import logging

    from ensemblex.preprocessing import infer_schema

    logger = logging.getLogger("ensemblex.preprocessing")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the ensemble warns about dropped columns itself
    try:
        return bool(infer_schema(X, source="X").features)
    finally:
        logger.setLevel(level)


def deep_members(task: str, random_state: int = 0) -> list[Member]:
    """A deep ensemble of 5 MLPs and TabM (``d_block`` 256, at most 60 epochs): on the bundled
    churn table, 5 folds take about 20 minutes on one CPU core, mostly TabM."""
    try:
        from ensemblex.deep import (
            DeepEnsembleClassifier,
            DeepEnsembleRegressor,
            TabMClassifier,
            TabMRegressor,
        )
    except ImportError as exc:  # torch is an extra
        raise ImportError("the deep zoo needs PyTorch: pip install 'ensemblex[torch]'") from exc
    reg = task == "regression"
    mlps = (DeepEnsembleRegressor if reg else DeepEnsembleClassifier)(
        n_members=5, hidden=(256, 256), max_epochs=100, patience=8, random_state=random_state
    )
    tabm = (TabMRegressor if reg else TabMClassifier)(
        k=32, n_blocks=3, d_block=256, max_epochs=60, patience=8, random_state=random_state
    )
    return [member("mlp_ensemble", mlps, "onehot"), member("tabm", tabm, "onehot")]
