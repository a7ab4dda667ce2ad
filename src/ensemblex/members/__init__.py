"""Members: the protocol every model family implements, the families, and the zoos.

- ``base``: :class:`Member` (fit on a fold, predict ``(n, columns, outputs)``, save/load),
  :class:`TabularMember` (families behind the per-family table encodings);
- one module per family: ``sklearn``, ``lightgbm``, ``xgboost``, ``catboost``, ``torch``,
  ``prefitted``, ``text``; ``registry`` lists them by name;
- ``zoo``: the built-in zoos and :func:`member` (an estimator wrapped in its family).
"""

from ensemblex.members.base import FoldContext, Member, TabularMember, load_member
from ensemblex.members.prefitted import PrefittedMember, prefitted
from ensemblex.members.registry import (
    FAMILIES,
    family_class,
    family_for,
    family_of,
    member_from_spec,
)
from ensemblex.members.zoo import ZOOS, member, resolve_members, zoo

__all__ = [
    "FAMILIES",
    "ZOOS",
    "FoldContext",
    "Member",
    "PrefittedMember",
    "TabularMember",
    "family_class",
    "family_for",
    "family_of",
    "load_member",
    "member",
    "member_from_spec",
    "prefitted",
    "resolve_members",
    "zoo",
]
