"""Save a fitted combiner as JSON plus one ``.npz`` of numeric arrays; never a pickle.

Generic over combiners: the JSON is :meth:`Combiner.get_state`'s dict, the arrays its arrays,
and loading finds the class by name (:meth:`Combiner.from_state`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ensemblex.combiners.base import Combiner
from ensemblex.combiners.state import combiner_class


def combiner_state(combiner, folder: Path, prefix: str = "combiner") -> tuple[dict, list[Path]]:
    """A JSON-able description of a fitted combiner, and the files written to ``folder``.

    Parameters
    ----------
    combiner : Combiner
        A fitted combiner.
    folder : Path
        Existing folder that receives ``{prefix}.npz`` when the state holds arrays.
    prefix : str, default "combiner"

    Returns
    -------
    state : dict
        :meth:`Combiner.get_state`'s dict, with ``"arrays"``: the file name of the arrays
        (relative to ``folder``) or None.
    files : list of Path
        The files written.
    """
    if not isinstance(combiner, Combiner):
        raise TypeError(f"combiner must be a Combiner, however: combiner={type(combiner).__name__}")
    state, arrays = combiner.get_state()
    files: list[Path] = []
    state["arrays"] = None
    if arrays:
        path = Path(folder) / f"{prefix}.npz"
        # get_state keeps only numeric arrays, so nothing here needs (or gets) a pickle.
        np.savez(path, **arrays)
        files.append(path)
        state["arrays"] = path.name
    return state, files


def load_combiner(state: dict, folder: Path) -> Combiner:
    """Rebuild a fitted combiner from :func:`combiner_state`'s description and files.

    Raises ValueError for an unknown class name, a missing or foreign array file, or a state
    that does not describe a fitted combiner.
    """
    folder = Path(folder)
    if not isinstance(state, dict):
        raise ValueError(f"{folder}: the combiner state must be a dict, however: {state!r}")
    try:
        combiner_class(state.get("class"))
    except ValueError as exc:
        raise ValueError(f"{folder}: {exc}") from None
    arrays: dict[str, np.ndarray] = {}
    name = state.get("arrays")
    if name is not None:
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".npz"):
            raise ValueError(f"{folder}: arrays must name an .npz file in it, however: {name!r}")
        with np.load(folder / name, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    try:
        return Combiner.from_state(state, arrays)
    except ValueError as exc:
        raise ValueError(f"{folder}: {exc}") from None
