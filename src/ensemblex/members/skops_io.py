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


def load_skops(path: Path):
    """Load a skops file, refusing any type outside skops' defaults and our allowlist."""
    import skops.io as sio
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
