"""Members: adapters over scikit-learn, LightGBM, XGBoost and CatBoost, and the zoos."""

from ensemblex.members.families import family_of, load_model, predict_outputs, save_model
from ensemblex.members.zoo import ZOOS, MemberSpec, prefitted, resolve_members, zoo

__all__ = [
    "ZOOS",
    "MemberSpec",
    "family_of",
    "load_model",
    "predict_outputs",
    "prefitted",
    "resolve_members",
    "save_model",
    "zoo",
]
