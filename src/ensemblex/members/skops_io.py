"""Reading skops files safely: only skops' default types and an explicit allowlist."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from pathlib import Path

# Types a saved scikit-learn member may contain beyond skops' defaults (which cover
# scikit-learn's estimators): the compiled pieces of trees, neighbours and optimisers, and
# ensemblex's own transformer. A file naming any other type is refused.
TRUSTED_SKOPS_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn.model_selection._split.KFold",
        "ensemblex.preprocessing.TextCategories",
    }
)


def skops_io():
    """``skops.io``, imported without importing PyTorch or pytest.

    Importing ``skops.io`` lists scikit-learn's estimators, walking every scikit-learn
    package, including ``sklearn.externals.array_api_compat.torch``, which imports torch
    when it is installed (1.6 s of a 2 s import), and ``sklearn.utils._testing``, which
    imports pytest when it is installed (0.25 s of the 0.6 s left): types skops never needs.
    Both imports are optional there, so while skops is imported they are made to fail (unless
    already done); the list of estimators skops trusts is the same (208 types with
    scikit-learn 1.9).
    """
    if "skops.io" in sys.modules:
        import skops.io

        return skops.io
    blocked = [name for name in ("torch", "pytest") if name not in sys.modules]
    before = set(sys.modules)
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    finder = _FastWhichmodule()
    sys.meta_path.insert(0, finder)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(finder)
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
        # scikit-learn's test helpers, imported without pytest, lack the names they define
        # with it: forgotten, a later import runs them again, with pytest if it is there
        for name in _NEEDS_BLOCKED & (set(sys.modules) - before):
            del sys.modules[name]
    return skops.io


# Modules the scan imports that define names only when a blocked package imports.
_NEEDS_BLOCKED = {"sklearn.utils._testing"}


class _FastWhichmodule(importlib.abc.MetaPathFinder):
    """Gives ``skops.io._utils`` a faster ``whichmodule``, with the same answers.

    At import, skops names every SciPy ufunc it trusts by searching ``sys.modules``, in
    order, for the first module holding it: ``getattr(module, name, None)`` on each of
    about 2,000 modules for each of about 400 ufuncs. A miss on a module raises and catches
    an AttributeError whose message is formatted first, so the search took 0.9 s of
    `predict`'s 7.7 s CPU. Reading a plain module's ``__dict__`` gives what ``getattr``
    gives (names of the module type itself, like ``__class__``, excepted), at a fraction of
    the cost; modules with a ``__getattr__`` of their own, and other objects in
    ``sys.modules``, are still asked through ``getattr``.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "skops.io._utils":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        # a loader of its own: a zip importer is the loader of every module in its archive
        spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    """``loader``, replacing ``whichmodule`` in the module once it has run."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        module.whichmodule = _fast_whichmodule(module.whichmodule)

    def __getattr__(self, name):  # get_source, is_package, ...: the wrapped loader's
        return getattr(self.loader, name)


_MODULE_TYPE_NAMES = frozenset(dir(types.ModuleType))


def _fast_whichmodule(original):
    def whichmodule(obj, name: str) -> str:
        module_name = getattr(obj, "__module__", None)
        if module_name is not None or "." in name or name in _MODULE_TYPE_NAMES:
            return original(obj, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # as skops: numpy.core
            for module_name, module in sys.modules.copy().items():
                if module_name in ("__main__", "__mp_main__") or module is None:
                    continue
                namespace = getattr(module, "__dict__", None)
                if type(module) is types.ModuleType and "__getattr__" not in namespace:
                    found = namespace.get(name)
                else:
                    try:
                        found = getattr(module, name, None)
                    except (AttributeError, ImportError):
                        continue
                if found is obj:
                    return module_name
        return "__main__"

    return whichmodule


def dump_skops(obj, path: Path) -> None:
    """Write ``obj`` with skops, deflate-compressed: a forest's node arrays shrink about 6x
    (a 150-tree random forest on 8,000 rows: 28 MB stored, 4.5 MB deflated) and load in
    about the same time."""
    import zipfile

    sio = skops_io()
    sio.dump(obj, path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)


def load_skops(path: Path):
    """Load a skops file, refusing any type outside skops' defaults and our allowlist."""
    sio = skops_io()
    from skops.io.exceptions import UntrustedTypesFoundException

    # one pass: skops audits the tree against the allowlist before constructing anything
    # (asking get_untrusted_types first would build and walk the tree twice)
    try:
        return sio.load(path, trusted=sorted(TRUSTED_SKOPS_TYPES))
    except UntrustedTypesFoundException:
        refused = sorted(set(sio.get_untrusted_types(file=path)) - TRUSTED_SKOPS_TYPES)
        raise ValueError(f"{path}: refuses to load untrusted types {refused}") from None
    except Exception as exc:  # a damaged file fails inside skops, zipfile or numpy
        raise ValueError(f"{path}: not a readable skops file ({exc})") from None


def skops_content_digest(path: Path) -> str | None:
    """SHA-256 of what a skops file holds, the same for two saves of equal objects: its
    schema (in its own key order, which skops reads by position) with skops' object ids
    (``id()`` at save time, which also name the array files) numbered in order of
    appearance, and each array file, length-framed, under its number. None where the file
    is not plainly of that shape (it is then loaded and audited on its own)."""
    import hashlib
    import json
    import zipfile

    numbers: dict[int, int] = {}

    def number(raw) -> int:
        if type(raw) is not int or raw <= 0:  # skops' ids are positive integers
            raise ValueError(f"object id {raw!r}")
        return numbers.setdefault(raw, len(numbers) + 1)

    named: dict[str, str] = {}  # array file -> its name, numbered

    def canonical(node):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "__id__":
                    v = number(v)
                elif k == "file" and isinstance(v, str):
                    stem, dot, suffix = v.partition(".")
                    if not (stem.isdigit() and dot and suffix.isalnum()):
                        raise ValueError(f"file name {v!r}")
                    v = named.setdefault(v, f"{number(int(stem))}.{suffix}")
                else:
                    v = canonical(v)
                out[k] = v
            return out
        if isinstance(node, list):
            return [canonical(v) for v in node]
        return node

    try:
        with zipfile.ZipFile(path) as archive:
            schema = canonical(json.loads(archive.read("schema.json")))
            digest = hashlib.sha256(json.dumps(schema).encode())
            if set(archive.namelist()) != set(named) | {"schema.json"}:
                return None  # files the schema does not name, or names it lacks
            for name, canonical_name in sorted(named.items(), key=lambda item: item[1]):
                data = archive.read(name)
                digest.update(f"\0{canonical_name}\0{len(data)}\0".encode())
                digest.update(data)
    except Exception:  # any unreadable file: skops' own load says why
        return None
    return digest.hexdigest()
