"""LightGBM members: categorical codes read natively, saved as the booster's text model
(gzip-compressed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ensemblex.files import gzip_in_place, read_gzip
from ensemblex.members.base import TabularMember, one_column


class LightGBMMember(TabularMember):
    """An ``LGBMRegressor``/``LGBMClassifier``; after fitting only its ``Booster`` is kept,
    exactly as it is read back from the text file."""

    family = "lightgbm"
    suffix = ".txt"
    library = "lightgbm"
    default_encoding = "native"
    thread_param = "n_jobs"

    def fit_model(self, estimator, X, y, context):
        categorical = self.categorical_columns(context)
        kwargs = {"categorical_feature": categorical} if categorical else {}
        return estimator.fit(X, y, **kwargs).booster_

    def adopt(self, model):
        return getattr(model, "booster_", model)

    def predict_model(self, X):
        # a booster predicts values, P(class 1) for binary, or (n, k) probabilities
        return one_column(self.model_.predict(X), self.task)

    def save_model(self, path):
        # LightGBM's own text, compressed: a 300-tree model shrinks from 2 MB to 0.4 MB
        self.model_.save_model(str(path))
        gzip_in_place(path)

    def model_settings(self):
        return {"compression": "gzip"}

    @classmethod
    def load_model(cls, path, task, settings):
        import lightgbm as lgb

        path = Path(path)
        if settings.get("compression") == "gzip":  # models saved before 0.1: plain text
            path = path.with_name(path.name + ".gz")
            data = read_gzip(path)
        else:
            data = path.read_bytes()
        problem = check_model_text(data)
        if problem:
            raise ValueError(f"{path}: not a readable LightGBM model ({problem})")
        try:
            return lgb.Booster(model_str=data.decode("utf-8"))
        except lgb.basic.LightGBMError as exc:
            raise ValueError(f"{path}: not a readable LightGBM model ({exc})") from None


def check_model_text(data: bytes) -> str | None:
    """What is wrong with a LightGBM text model's structure, or None.

    LightGBM's C++ parser trusts ``tree_sizes`` and the child indices of each tree, so a
    truncated or altered file can end the process (segmentation fault, abort) instead of
    raising. The member's digest catches damage first; this check (sizes line up with the
    ``Tree=`` blocks, every tree's arrays have the lengths and index ranges its
    ``num_leaves`` implies) keeps a file whose digest was rewritten from crashing either.
    No library validates a model text short of parsing it, hence by hand.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text at byte {exc.start}"
    if not text.startswith("tree\n"):
        return "does not start with 'tree'"
    end = text.find("\nend of trees\n")
    if end < 0:
        return "no 'end of trees' line (truncated?)"
    tail = text[end:]
    if "\nparameters:\n" in tail:
        params, found, _ = tail.partition("\nparameters:\n")[2].partition("\nend of parameters\n")
        if not found:
            return "no 'end of parameters' line (truncated?)"
        if not all(_PARAMETER.fullmatch(line) for line in params.split("\n") if line):
            return "a malformed parameters section"
    header, _, _ = text.partition("\n\n")
    fields = dict(line.split("=", 1) for line in header.split("\n")[1:] if "=" in line)
    try:
        max_feature = int(fields["max_feature_idx"])
        sizes = [int(v) for v in fields.get("tree_sizes", "").split()]
    except (KeyError, ValueError):
        return "a malformed header"
    start = text.find("Tree=")
    if start < 0 or start > end:
        return "no trees"
    blocks = text[start : end + 1].split("\n\n")
    blocks = [b for b in blocks if b.strip()]
    if sizes:
        if sum(sizes) != end + 1 - start or len(sizes) != len(blocks):
            return "tree_sizes do not match the trees"
        offset = start
        for k, size in enumerate(sizes):
            if not text.startswith(f"Tree={k}\n", offset):
                return f"tree {k} is not where tree_sizes puts it"
            offset += size
    for k, block in enumerate(blocks):
        problem = _check_tree(block, max_feature)
        if problem:
            return f"tree {k}: {problem}"
    return None


_NUMBER = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity|na))"
_FIELD = re.compile(rf"[a-z_]+= *(?:{_NUMBER}(?: +{_NUMBER})*)? *", re.IGNORECASE)
_PARAMETER = re.compile(r"\[[a-z_0-9]+: [^\n]*\]")
_PER_NODE = (
    "split_feature split_gain threshold decision_type left_child right_child "
    "internal_value internal_weight internal_count"
).split()
_PER_LEAF = "leaf_value leaf_weight leaf_count".split()


def _check_tree(block: str, max_feature: int) -> str | None:
    lines = block.strip("\n").split("\n")[1:]  # after "Tree=k"
    for line in lines:
        if not _FIELD.fullmatch(line):
            return f"malformed line {line[:40]!r}"
    fields = {k: v.split() for k, v in (line.split("=", 1) for line in lines)}
    try:
        leaves = int(fields["num_leaves"][0])
        n_cat = int(fields["num_cat"][0])
        boundaries = np.array(fields.get("cat_boundaries", []), dtype=np.int64)
        n_words = len(fields.get("cat_threshold", []))
    except (KeyError, IndexError, ValueError, OverflowError):
        return "no num_leaves or num_cat"
    if leaves < 1 or n_cat < 0:
        return "num_leaves < 1 or num_cat < 0"
    if n_cat > 0 and (
        len(boundaries) != n_cat + 1
        or boundaries[0] != 0
        or np.any(np.diff(boundaries) < 0)
        or boundaries[-1] != n_words
    ):
        return "categorical split tables are inconsistent"
    if leaves == 1:
        return None
    for key in _PER_NODE + _PER_LEAF:
        expected = leaves - 1 if key in _PER_NODE else leaves
        if key in fields and len(fields[key]) != expected:
            return f"{key} has {len(fields[key])} values, num_leaves implies {expected}"
    try:
        features = np.array(fields["split_feature"], dtype=np.int64)
        left = np.array(fields["left_child"], dtype=np.int64)
        right = np.array(fields["right_child"], dtype=np.int64)
        decision = np.array(fields["decision_type"], dtype=np.int64)
        thresholds = np.array(fields["threshold"], dtype=np.float64)
    except (KeyError, ValueError, OverflowError):
        return "missing or non-integer split fields"
    if "leaf_value" not in fields:
        return "no leaf_value"
    if features.min() < 0 or features.max() > max_feature:
        return "split_feature out of range"
    children = np.concatenate([left, right])
    if children.min() < -leaves or children.max() > leaves - 2:
        return "child index out of range"
    # each internal node but the root, and each leaf, is a child exactly once
    nodes = np.bincount(children[children >= 0], minlength=leaves - 1)
    leaves_seen = np.bincount(~children[children < 0], minlength=leaves)
    if nodes[0] != 0 or np.any(nodes[1:] != 1) or np.any(leaves_seen != 1):
        return "children do not form a tree"
    categorical = (decision & 1).astype(bool)
    cat_splits = thresholds[categorical]
    if np.any(cat_splits < 0) or np.any(cat_splits >= n_cat) or np.any(cat_splits % 1 != 0):
        return "a categorical split points outside the category tables"
    return None
