"""A combiner's state as data: a JSON-able dict plus named numeric arrays, never a pickle.

:meth:`Combiner.get_state` walks its constructor parameters and fitted attributes through
:func:`encode`; :meth:`Combiner.from_state` walks them back through :func:`decode`. Plain
values (None, bool, int, str, finite float, lists, dicts with string keys) stay as they are;
everything else becomes a one-key dict tagged with its kind:

- ``{"__array__": name}``: a numeric array, stored under ``name`` in the arrays;
- ``{"__list_array__": [...]}``: a non-numeric array (e.g. string labels), as a list;
- ``{"__float__": "inf"}``: a float JSON cannot hold (inf, -inf, nan);
- ``{"__combiner__": state}``: a fitted combiner nested in another (its arrays named under
  the attribute that holds it);
- ``{"__estimator__": class, "params": {...}}``: an unfitted combiner passed as a parameter;
- ``{"__dict__": {...}}``: a plain dict whose one key happens to look like a tag.

Combiner classes are found by name in a registry that every subclass of
:class:`~ensemblex.combiners.base.Combiner` joins when it is defined.

Examples
--------
>>> import numpy as np
>>> arrays = {}
>>> encode({"w": np.array([0.5, 0.5]), "loss": float("inf")}, "x", arrays)
{'w': {'__array__': 'x.w'}, 'loss': {'__float__': 'inf'}}
>>> decode({'w': {'__array__': 'x.w'}, 'loss': {'__float__': 'inf'}}, arrays)
{'w': array([0.5, 0.5]), 'loss': inf}
"""

from __future__ import annotations

import numpy as np

from ensemblex.metrics import Metric

_REGISTRY: dict[str, type] = {}
_TAGS = ("__array__", "__list_array__", "__float__", "__combiner__", "__estimator__", "__dict__")
_FLOATS = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}


def register(cls: type) -> type:
    """Make ``cls`` loadable by its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def combiner_class(name) -> type:
    """The registered combiner class called ``name``; ValueError naming it if unknown."""
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"unknown combiner class {name!r}; known classes: {', '.join(sorted(_REGISTRY))}"
        )
    return cls


def is_fitted_combiner(value) -> bool:
    return hasattr(value, "get_state") and hasattr(value, "members_")


def encode(value, key: str, arrays: dict[str, np.ndarray]):
    """The JSON-able form of ``value``; numeric arrays go into ``arrays`` under ``key``-based names.

    Raises TypeError for a value that has no data form (an open file, a lambda, ...).
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            arrays[key] = value
            return {"__array__": key}
        return {"__list_array__": value.tolist()}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else {"__float__": str(value)}
    if isinstance(value, Metric):
        return value.name
    if is_fitted_combiner(value):
        return {"__combiner__": value._state(arrays, prefix=f"{key}.")}
    if hasattr(value, "get_state") and hasattr(value, "get_params"):
        params = encode(value.get_params(deep=False), f"{key}.params", arrays)
        return {"__estimator__": type(value).__name__, "params": params}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{key}: only dicts with string keys can be stored as state")
        out = {k: encode(v, f"{key}.{k}", arrays) for k, v in value.items()}
        return {"__dict__": out} if len(out) == 1 and next(iter(out)) in _TAGS else out
    if isinstance(value, list | tuple):
        return [encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    raise TypeError(f"{key}: cannot store a {type(value).__name__} as state")


def decode(value, arrays: dict[str, np.ndarray]):
    """Inverse of :func:`encode` (tuples come back as lists)."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__estimator__", "params"}:
        cls = combiner_class(value["__estimator__"])
        return cls(**decode(value["params"], arrays))
    if len(value) == 1 and next(iter(value)) in _TAGS:
        ((tag, inner),) = value.items()
        if tag == "__array__":
            if inner not in arrays:
                raise ValueError(f"the state refers to an array {inner!r} that is not stored")
            return arrays[inner]
        if tag == "__list_array__":
            return np.asarray(inner)
        if tag == "__float__":
            if inner not in _FLOATS:
                raise ValueError(f"__float__ must be one of {list(_FLOATS)}, however: {inner!r}")
            return float(_FLOATS[inner])
        if tag == "__combiner__":
            return combiner_class(inner.get("class")).from_state(inner, arrays)
        if tag == "__dict__":
            return {k: decode(v, arrays) for k, v in inner.items()}
    return {k: decode(v, arrays) for k, v in value.items()}
