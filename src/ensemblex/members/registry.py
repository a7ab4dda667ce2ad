"""The member families, by name. Adding a family is one line here plus its own module.

Families are imported when first used, so listing one costs nothing at start-up and an
optional library (torch, a text encoder) is only needed by those who use it.
"""

from __future__ import annotations

from importlib import import_module

FAMILIES: dict[str, str] = {
    "sklearn": "ensemblex.members.sklearn:SklearnMember",
    "lightgbm": "ensemblex.members.lightgbm:LightGBMMember",
    "lightgbm_gaussian": "ensemblex.members.distributional:LightGBMGaussian",
    "xgboost": "ensemblex.members.xgboost:XGBoostMember",
    "catboost": "ensemblex.members.catboost:CatBoostMember",
    "torch": "ensemblex.members.torch:TorchMember",
    "prefitted": "ensemblex.members.prefitted:PrefittedMember",
    "tfidf_logistic": "ensemblex.members.text:TfidfLogistic",
    "tfidf_ridge": "ensemblex.members.text:TfidfRidge",
    "sentence_embedding": "ensemblex.members.embeddings:SentenceEmbedding",
    "zero_shot_prompts": "ensemblex.members.prompts:ZeroShotPrompts",
    "view": "ensemblex.members.views:ViewMember",
    "graph": "ensemblex.members.graph:GraphMember",
}

# Families that wrap a user's estimator, asked in this order which one accepts it; the
# first (most specific) wins, scikit-learn accepts anything with fit and predict.
ESTIMATOR_FAMILIES = ("torch", "lightgbm", "xgboost", "catboost", "sklearn")


def family_class(name: str):
    """The member class registered under ``name``."""
    if name not in FAMILIES:
        raise ValueError(f"unknown member family {name!r}; registered: {sorted(FAMILIES)}")
    module, attr = FAMILIES[name].split(":")
    return getattr(import_module(module), attr)


def family_for(estimator):
    """The family class that wraps ``estimator``."""
    for name in ESTIMATOR_FAMILIES:
        cls = family_class(name)
        if cls.accepts(estimator):
            return cls
    raise TypeError(
        f"{type(estimator).__name__} is not a member: an estimator needs fit and predict"
    )


def family_of(estimator) -> str:
    """The family name of ``estimator`` (``"sklearn"``, ``"lightgbm"``, ... ``"torch"``)."""
    return family_for(estimator).family


def member_from_spec(spec: str):
    """A member from a command-line spec ``NAME=FAMILY[:key=value,...]``.

    Values are read as JSON where they parse (numbers, booleans, lists), else as strings; the
    family's constructor takes them as keyword arguments, so this suits families whose
    settings are plain values (such as ``tfidf_logistic``), not wrappers of an estimator.

    Examples
    --------
    >>> member_from_spec("chars=tfidf_logistic:analyzer=char_wb,C=3").fingerprint()[:2]
    ['chars', 'tfidf_logistic']
    """
    import json

    name, sep, rest = spec.partition("=")
    family, _, options = rest.partition(":")
    if not sep or not name or not family:
        raise ValueError(f"--member must look like NAME=FAMILY[:key=value,...], however: {spec!r}")
    params = {}
    for item in filter(None, options.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--member {spec!r}: option {item!r} must be key=value")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    try:
        return family_class(family)(name, **params)
    except TypeError as exc:
        raise ValueError(f"--member {spec!r}: {exc}") from None
