"""Reading skops files safely: only skops' default types and an explicit allowlist."""

from __future__ import annotations

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
    import sys

    if "skops.io" in sys.modules:
        import skops.io

        return skops.io
    blocked = [name for name in ("torch", "pytest") if name not in sys.modules]
    before = set(sys.modules)
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import skops.io
    finally:
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
