"""scikit-learn forests saved as a skops *shell* plus one safetensors file of all their trees.

skops writes a forest as a zip of small ``.npy`` entries (about five per tree) that its
auditor walks one by one: about 0.7 ms a tree whatever its size (bench/forest_load.py: a
150-tree random forest and a 100-tree extra-trees model, 0.11 s each). Here skops keeps only
what is small and varied (the forest with ``estimators_`` emptied, and one tree estimator
without its ``tree_``: the *template*) and the trees' arrays, concatenated over the trees, go
into one LZ4-compressed safetensors file (:data:`TREES_FILE`, see :data:`LZ4_MAGIC`):

==================================  =====================  ===================================
tensor                              dtype, shape           what
==================================  =====================  ===================================
``node_count``                      int64 ``(T,)``         nodes per tree (trees in order)
``max_depth``                       int64 ``(T,)``         each tree's depth
``random_state``                    int64 ``(T,)``         each tree estimator's random_state
``n_features``, ``n_classes``       int64 ``(1,)``         the trees' (``n_classes`` 1 for
                                                           regression)
``left_child``, ``right_child``,    int64 ``(N,)``         the fields of
``feature``, ``n_node_samples``                            ``sklearn.tree._tree.NODE_DTYPE``
``threshold``, ``impurity``,        float64 ``(N,)``
``weighted_n_node_samples``
``missing_go_to_left``              uint8 ``(N,)``
``values``                          float64 ``(N, 1, C)``  class fractions, or means
==================================  =====================  ===================================

Loading reads that file once, checks every array (names, dtypes, shapes; each tree a proper
tree whose children come after their parent; features and depths in range: what
scikit-learn's compiled tree code trusts and would read out of bounds) and restores each
``Tree`` through ``__setstate__`` from slices of one structured node array: nothing is
unpickled, the trees are bit for bit the saved ones, and the two forests above load in
0.010 s and 0.018 s. Only forests whose tree estimators differ in nothing but ``tree_`` and
``random_state`` (all forests scikit-learn fits) take this layout; other models stay one
plain skops file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ensemblex.files import MAX_DECOMPRESSED_BYTES
from ensemblex.members.skops_io import dump_skops, load_skops

# Recorded in the member's settings; a member saved without it is one plain skops file.
FOREST_FORMAT = "skops-shell+safetensors-trees/1"
TREES_FILE = "trees.safetensors.lz4"
# The trees file: this magic, the safetensors bytes' length (uint64, little-endian), then
# those bytes as one LZ4 frame (LZ4HC level 4, through pyarrow: a dependency already).
# On the forests of bench/forest_load.py (18 MB of arrays) it inflates in 5 ms, gzip in
# 31 ms; its 4.3 MB are gzip's 3.6 MB plus a fifth, the same as skops' deflated zip.
LZ4_MAGIC = b"EXTREES1"
LZ4_LEVEL = 4

# The dtype each node field is stored with (NODE_DTYPE's on 64-bit platforms).
NODE_FIELDS = {
    "left_child": np.dtype(np.int64),
    "right_child": np.dtype(np.int64),
    "feature": np.dtype(np.int64),
    "threshold": np.dtype(np.float64),
    "impurity": np.dtype(np.float64),
    "n_node_samples": np.dtype(np.int64),
    "weighted_n_node_samples": np.dtype(np.float64),
    "missing_go_to_left": np.dtype(np.uint8),
}
PER_TREE = ("node_count", "max_depth", "random_state")
TREE_LEAF, TREE_UNDEFINED = -1, -2  # sklearn.tree._tree: a leaf's children and feature


# ---------------------------------------------------------------- which models
def splits_into_trees(model) -> bool:
    """Whether ``model`` is a fitted single-output scikit-learn forest whose tree estimators
    share every attribute but ``tree_`` and ``random_state`` (an int): the forests this
    layout saves. Others stay plain skops."""
    from sklearn.ensemble._forest import ForestClassifier, ForestRegressor
    from sklearn.tree._tree import NODE_DTYPE, Tree

    try:
        import pyarrow as pa
        import safetensors.numpy  # noqa: F401
    except ImportError:
        return False
    if not pa.Codec.is_available("lz4"):
        return False
    if not isinstance(model, ForestClassifier | ForestRegressor):
        return False
    trees = getattr(model, "estimators_", None)
    if (
        not trees
        or getattr(model, "n_outputs_", None) != 1
        or NODE_DTYPE.names != tuple(NODE_FIELDS)
    ):
        return False
    first = trees[0].__dict__
    shape = _tree_shape(trees[0].tree_) if type(trees[0].tree_) is Tree else None
    for tree in trees:
        state = tree.__dict__
        if (
            type(tree) is not type(trees[0])
            or state.keys() != first.keys()
            or type(state["tree_"]) is not Tree
            or _tree_shape(state["tree_"]) != shape
            or not isinstance(state.get("random_state"), int | np.integer)
            or not -(2**63) <= state["random_state"] < 2**63  # stored as int64
        ):
            return False
        for key, value in state.items():
            if key not in ("tree_", "random_state") and not _same(value, first[key]):
                return False
    return shape is not None and shape[2] == 1


def _tree_shape(tree) -> tuple:
    return tree.n_features, tuple(int(k) for k in tree.n_classes), tree.n_outputs


def _same(a, b) -> bool:
    """Equal values of the same type (arrays: same dtype, shape and elements)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- writing
def dump_forest(model, path: Path) -> Path:
    """Write ``model`` (:func:`splits_into_trees` must hold) as its skops shell at ``path``
    and its trees beside it (:data:`TREES_FILE`); returns the trees file. ``model`` is left
    as it is."""
    import copy

    path = Path(path)
    trees = model.estimators_
    forest = copy.copy(model)  # shallow: the fitted model keeps its trees
    forest.estimators_ = []
    template = copy.copy(trees[0])
    del template.tree_
    template.random_state = None
    dump_skops({"forest": forest, "tree": template}, path)

    states = [tree.tree_.__getstate__() for tree in trees]
    nodes = np.concatenate([state["nodes"] for state in states])
    arrays = {
        name: np.ascontiguousarray(nodes[name], dtype=NODE_FIELDS[name]) for name in NODE_FIELDS
    }
    arrays["values"] = np.ascontiguousarray(np.concatenate([state["values"] for state in states]))
    arrays["node_count"] = np.array([state["node_count"] for state in states], dtype=np.int64)
    arrays["max_depth"] = np.array([state["max_depth"] for state in states], dtype=np.int64)
    arrays["random_state"] = np.array([int(tree.random_state) for tree in trees], dtype=np.int64)
    arrays["n_features"] = np.array([trees[0].tree_.n_features], dtype=np.int64)
    arrays["n_classes"] = np.asarray(trees[0].tree_.n_classes, dtype=np.int64)
    return write_trees_file(arrays, path.with_name(TREES_FILE))


def write_trees_file(arrays: dict[str, np.ndarray], path: Path) -> Path:
    """Write ``arrays`` as a trees file (see :data:`LZ4_MAGIC`); returns ``path``."""
    import safetensors.numpy

    data = safetensors.numpy.save(arrays)
    packed = pa_codec(LZ4_LEVEL).compress(data, asbytes=True)
    Path(path).write_bytes(LZ4_MAGIC + struct.pack("<Q", len(data)) + packed)
    return Path(path)


def pa_codec(level: int | None = None):
    """pyarrow's LZ4 frame codec."""
    import pyarrow as pa

    return pa.Codec("lz4", compression_level=level)


# ---------------------------------------------------------------- reading
def load_forest(path: Path):
    """Read a forest written by :func:`dump_forest`: the shell at ``path`` through skops'
    allowlist, the trees from :data:`TREES_FILE` beside it, checked before use. A damaged
    or crafted file is a ValueError naming it."""
    from sklearn.ensemble._forest import ForestClassifier, ForestRegressor
    from sklearn.tree import BaseDecisionTree
    from sklearn.tree._tree import NODE_DTYPE

    path = Path(path)
    parts = load_skops(path)
    forest = parts.get("forest") if type(parts) is dict else None
    template = parts.get("tree") if type(parts) is dict else None
    if not (
        isinstance(forest, ForestClassifier | ForestRegressor)
        and isinstance(template, BaseDecisionTree)
        and getattr(forest, "estimators_", None) == []
        and getattr(forest, "n_outputs_", None) == 1
        and getattr(template, "n_features_in_", None) == getattr(forest, "n_features_in_", 0)
    ):
        raise ValueError(
            f"{path}: expected a forest shell (a dict of a single-output scikit-learn forest "
            f"without trees and a tree estimator over as many features), however it holds "
            f"{type(parts).__name__}"
        )
    if NODE_DTYPE.names != tuple(NODE_FIELDS):
        raise ValueError(
            f"{path}: its trees have the node fields {list(NODE_FIELDS)}, however this "
            f"scikit-learn's trees have {list(NODE_DTYPE.names)}; refit or load it with the "
            f"scikit-learn version that saved it"
        )
    trees_path = path.with_name(TREES_FILE)
    arrays = read_trees_file(trees_path)
    n_classes = getattr(forest, "n_classes_", 1) if isinstance(forest, ForestClassifier) else 1
    _check_trees(arrays, trees_path, int(forest.n_features_in_), int(n_classes))
    forest.estimators_ = _build_trees(arrays, template, trees_path)
    return forest


def read_trees_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a trees file (see :data:`LZ4_MAGIC`), unchecked; ValueError naming it
    if it is not one."""
    try:
        import safetensors.numpy
    except ImportError:  # an optional dependency of ensemblex (`pip install safetensors`)
        raise ValueError(
            f"{path}: reading these trees needs safetensors (pip install safetensors)"
        ) from None

    data = memoryview(path.read_bytes())
    head = len(LZ4_MAGIC) + 8
    if len(data) < head or data[: len(LZ4_MAGIC)] != LZ4_MAGIC:
        raise ValueError(f"{path}: not a trees file (expected it to start with {LZ4_MAGIC!r})")
    (size,) = struct.unpack_from("<Q", data, len(LZ4_MAGIC))
    # LZ4 expands at most 255x: a larger claim is damage (and would allocate it)
    limit = min(MAX_DECOMPRESSED_BYTES, 256 * len(data))
    if size > limit:
        raise ValueError(
            f"{path}: claims {size} bytes of arrays, more than the {limit} it can hold"
        )
    try:
        data = pa_codec().decompress(data[head:], decompressed_size=size, asbytes=True)
    except Exception as exc:  # pyarrow's OSError / ArrowInvalid on a damaged frame
        raise ValueError(f"{path}: not a readable LZ4 frame ({exc})") from None
    try:
        return safetensors.numpy.load(data)
    except Exception as exc:  # the parser's own error type differs between versions
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None


def _check_trees(arrays: dict, path: Path, n_features: int, n_classes: int) -> None:
    """Refuse (ValueError naming ``path``) arrays that are not ``T >= 1`` proper trees over
    ``n_features`` features and ``n_classes`` classes (1 for regression): scikit-learn's
    compiled tree code indexes with these numbers unchecked."""

    def refuse(what: str):
        raise ValueError(f"{path}: not a forest's trees: {what}")

    expected = {**NODE_FIELDS, "values": np.dtype(np.float64), "n_features": np.dtype(np.int64)}
    expected |= {"n_classes": np.dtype(np.int64)} | dict.fromkeys(PER_TREE, np.dtype(np.int64))
    if arrays.keys() != expected.keys():
        refuse(f"expected the arrays {sorted(expected)}, however: {sorted(arrays)}")
    for name, dtype in expected.items():
        a = arrays[name]
        if a.dtype != dtype or a.ndim != (3 if name == "values" else 1):
            refuse(
                f"{name} must be {dtype} with {3 if name == 'values' else 1} dimension(s), "
                f"however: {a.dtype} with shape {a.shape}"
            )
    if arrays["n_features"].tolist() != [n_features]:
        refuse(
            f"n_features must be [{n_features}] (the forest's), "
            f"however: {arrays['n_features'].tolist()}"
        )
    if arrays["n_classes"].tolist() != [n_classes]:
        refuse(
            f"n_classes must be [{n_classes}] (the forest's), "
            f"however: {arrays['n_classes'].tolist()}"
        )

    counts = arrays["node_count"]
    total = len(arrays["left_child"])
    if len(counts) == 0 or any(len(arrays[name]) != len(counts) for name in PER_TREE):
        refuse(
            f"{PER_TREE} must have one entry per tree (at least one tree), however: "
            f"{[arrays[name].shape for name in PER_TREE]}"
        )
    if counts.min() < 1 or counts.max() > total or counts.sum() != total:
        refuse(
            f"node_count must be positive and sum to the {total} nodes, "
            f"however: {counts.min()}..{counts.max()}, sum {counts.sum()}"
        )
    for name in NODE_FIELDS:
        if len(arrays[name]) != total:
            refuse(f"{name} must have {total} entries, however: {len(arrays[name])}")
    if arrays["values"].shape != (total, 1, n_classes):
        refuse(f"values must have shape {(total, 1, n_classes)}, however: {arrays['values'].shape}")

    # node checks over all trees at once, on whole arrays (masked selections cost 5x more)
    starts = np.cumsum(counts) - counts
    first = np.repeat(starts, counts)  # each node's tree's first and past-last node
    past = first + np.repeat(counts, counts)
    node = np.arange(total)
    left, right, feature = arrays["left_child"], arrays["right_child"], arrays["feature"]
    leaf = left == TREE_LEAF
    if not np.array_equal(leaf, right == TREE_LEAF):
        refuse("a node has one child (left_child and right_child must be -1 together)")
    inner = ~leaf
    # children inside their tree and after their parent (as scikit-learn's builders add
    # them): every walk from the root ends, and depths follow in one pass
    down_left, down_right = left + first, right + first
    for down in (down_left, down_right):
        if not np.array_equal((down > node) & (down < past), inner):
            refuse("a child index lies outside its tree or before its parent")
    # each node but the roots a child exactly once: a tree, not a graph whose walks (the
    # stack of partial dependence) can outgrow node_count
    parents = np.bincount(np.where(inner, down_left, total), minlength=total + 1)
    parents += np.bincount(np.where(inner, down_right, total), minlength=total + 1)
    expected = np.ones(total + 1, dtype=parents.dtype)
    expected[starts] = 0
    expected[total] = 2 * (total - np.count_nonzero(inner))  # leaves' children, set aside
    if not np.array_equal(parents, expected):
        refuse("a node is not the child of exactly one node (or a root is a child)")
    if not np.where(
        inner, (feature >= 0) & (feature < n_features), feature == TREE_UNDEFINED
    ).all():
        refuse(f"feature must be in [0, {n_features}) at splits and {TREE_UNDEFINED} at leaves")
    # +-inf is a real threshold (a split sending only the missing values one way); NaN is not
    if np.isnan(arrays["threshold"]).any():
        refuse("a threshold is NaN")
    if arrays["missing_go_to_left"].max() > 1:
        refuse("missing_go_to_left must be 0 or 1")


def _build_trees(arrays: dict, template, path: Path) -> list:
    """The tree estimators: ``template``'s attributes, each with its ``random_state`` and a
    ``Tree`` restored from its slice of the arrays (checked by :func:`_check_trees`; each
    tree's ``max_depth`` is checked here)."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    nodes = np.zeros(len(arrays["left_child"]), dtype=NODE_DTYPE)  # zeroed padding
    for name in NODE_FIELDS:
        nodes[name] = arrays[name]
    values = np.ascontiguousarray(arrays["values"])
    n_features = int(arrays["n_features"][0])
    n_classes = arrays["n_classes"].astype(np.intp)
    ends = np.cumsum(arrays["node_count"]).tolist()
    depths, seeds = arrays["max_depth"].tolist(), arrays["random_state"].tolist()
    cls, attributes = type(template), template.__dict__
    trees, start = [], 0
    for end, max_depth, seed in zip(ends, depths, seeds, strict=True):
        tree = Tree(n_features, n_classes, 1)
        tree.__setstate__(
            {
                "max_depth": max_depth,
                "node_count": end - start,
                "nodes": nodes[start:end],  # slices of contiguous arrays: no copies
                "values": values[start:end],
            }
        )
        # decision_path sizes its buffers by max_depth: it must be the true depth (the
        # roots have depth 1 here; one pass in C, children coming after their parent)
        if tree.compute_node_depths().max() != max_depth + 1:
            raise ValueError(
                f"{path}: not a forest's trees: tree {len(trees)} has max_depth {max_depth}, "
                f"however its nodes are {tree.compute_node_depths().max() - 1} levels deep"
            )
        estimator = cls.__new__(cls)
        # each tree its own arrays (classes_), as a per-tree load would give
        estimator.__dict__.update(
            {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in attributes.items()}
        )
        estimator.random_state = seed
        estimator.tree_ = tree
        trees.append(estimator)
        start = end
    return trees
