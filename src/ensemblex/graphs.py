"""A graph for node classification: node ids, node features and undirected edges.

:class:`Graph` is what graph members (:mod:`ensemblex.members.graph`) train on: the node table
says which node each row is (its node column), the graph holds every node's features and the
edges between them. Features are kept sparse when they are (a bag of words: scipy CSR), edges
as an ``(2, n_edges)`` int64 index holding both directions of every undirected edge, without
self loops or duplicates. :meth:`Graph.digest` names the graph by the SHA-256 of its arrays, so
a saved member can check it is given back the graph it was trained on.

Examples
--------
>>> import pandas as pd
>>> nodes = pd.DataFrame({"node": ["a", "b", "c"], "x": [1.0, 0.0, 2.0], "label": [0, 1, 0]})
>>> edges = pd.DataFrame({"source": ["a", "b"], "target": ["b", "c"]})
>>> g = Graph.from_frames(nodes, edges, exclude=["label"])
>>> g.n_nodes, g.n_features, g.n_edges, g.edge_index.tolist()
(3, 1, 4, [[0, 1, 1, 2], [1, 0, 2, 1]])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

# Features whose share of non-zero cells is below this are stored sparse (CSR).
SPARSE_DENSITY = 0.25


@dataclass(frozen=True, eq=False)
class Graph:
    """Nodes with features and undirected edges.

    Parameters
    ----------
    node_ids : ndarray of shape (n_nodes,)
        Unique node ids (int64, or object holding strings).
    features : ndarray or scipy.sparse.csr_matrix of shape (n_nodes, n_features)
        float32 node features, row ``i`` for ``node_ids[i]``.
    edge_index : ndarray of shape (2, n_edges)
        int64 positions into ``node_ids``: both directions of every edge, no self loops, no
        duplicates, sorted by source then target.
    feature_names : tuple of str
        One name per feature column.

    Use :meth:`from_frames` or :meth:`from_csv` to build one from tables (they check and
    normalise the input); the constructor trusts its arguments.
    """

    node_ids: np.ndarray
    features: np.ndarray | sp.csr_matrix
    edge_index: np.ndarray
    feature_names: tuple[str, ...] = ()

    # ------------------------------------------------------------------ sizes
    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_edges(self) -> int:
        """Directed edges (twice the undirected ones)."""
        return self.edge_index.shape[1]

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.features)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frames(
        cls,
        nodes: pd.DataFrame,
        edges: pd.DataFrame,
        *,
        node_column: str = "node",
        feature_columns=None,
        exclude=(),
        source: str = "source",
        target: str = "target",
        nodes_name: str = "nodes",
        edges_name: str = "edges",
    ) -> Graph:
        """A graph from a node table (one row per node) and an edge table.

        Parameters
        ----------
        nodes : DataFrame
            One row per node: its id in ``node_column`` and its features.
        edges : DataFrame
            One row per edge (either direction, or both): node ids in ``source`` and ``target``.
            Self loops are dropped, repeated edges kept once.
        node_column : str, default "node"
        feature_columns : list of str, optional
            Default: every numeric column except ``node_column`` and those in ``exclude``.
        exclude : sequence of str
            Columns that are not features (the target, the split).
        source, target : str
            Edge columns.
        nodes_name, edges_name : str
            What error messages call the two tables (their files, for :meth:`from_csv`).
        """
        for value, name in ((nodes, "nodes"), (edges, "edges")):
            if not isinstance(value, pd.DataFrame):
                raise TypeError(
                    f"{name} must be a pandas DataFrame, however: {type(value).__name__}"
                )
        if node_column not in nodes.columns:
            raise ValueError(
                f"{nodes_name}: node column {node_column!r} is missing; columns: "
                f"{list(nodes.columns)[:10]}"
            )
        ids = nodes[node_column]
        if ids.isna().any():
            raise ValueError(f"{nodes_name}: node column {node_column!r} has missing ids")
        duplicated = ids[ids.duplicated()].unique()
        if len(duplicated):
            raise ValueError(
                f"{nodes_name}: node ids must be unique, however: {node_column!r} repeats "
                f"{_few(duplicated)}"
            )
        node_ids = _id_array(ids)
        features, names = _features(nodes, node_column, feature_columns, exclude, nodes_name)
        edge_index = _edge_index(edges, node_ids, source, target, edges_name)
        return cls(node_ids, features, edge_index, names)

    @classmethod
    def from_csv(cls, nodes_path, edges_path, **kwargs) -> Graph:
        """:meth:`from_frames` on two CSV files (``.csv`` or ``.csv.gz``); errors name them."""
        nodes_path, edges_path = Path(nodes_path), Path(edges_path)
        nodes = pd.read_csv(nodes_path)
        edges = pd.read_csv(edges_path)
        kwargs.setdefault("nodes_name", str(nodes_path))
        kwargs.setdefault("edges_name", str(edges_path))
        return cls.from_frames(nodes, edges, **kwargs)

    # ------------------------------------------------------------------ lookups
    def positions(self, ids, what: str = "node ids") -> np.ndarray:
        """Positions ``(n,)`` of the given node ids; unknown ids raise a ValueError naming them."""
        ids = np.asarray(ids)
        position = pd.Index(self.node_ids).get_indexer(ids)
        if (position < 0).any():
            unknown = ids[position < 0]
            raise ValueError(
                f"{what} must be nodes of the graph, however: {len(unknown)} unknown, "
                f"such as {_few(unknown)}"
            )
        return position.astype(np.int64)

    def dense_features(self) -> np.ndarray:
        """Features as a dense float32 array ``(n_nodes, n_features)``."""
        if self.is_sparse:
            return self.features.toarray().astype(np.float32, copy=False)
        return np.asarray(self.features, dtype=np.float32)

    # ------------------------------------------------------------------ saving
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The graph as named arrays (sparse features as COO ``indices`` and ``values``) and
        JSON-able metadata; :meth:`from_arrays` reads them back."""
        arrays = {"edge_index": self.edge_index}
        meta = {
            "n_nodes": self.n_nodes,
            "n_features": self.n_features,
            "feature_names": list(self.feature_names),
            "sparse": self.is_sparse,
        }
        if self.node_ids.dtype.kind in "iu":
            arrays["node_ids"] = self.node_ids.astype(np.int64)
            meta["node_ids"] = None
        else:  # strings travel in the JSON metadata, not as tensors
            meta["node_ids"] = [str(v) for v in self.node_ids]
        if self.is_sparse:
            coo = self.features.tocoo()
            arrays["features.indices"] = np.stack([coo.row, coo.col]).astype(np.int64)
            arrays["features.values"] = coo.data.astype(np.float32)
        else:
            arrays["features.dense"] = np.asarray(self.features, dtype=np.float32)
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict, source: str = "graph"):
        """The graph written by :meth:`to_arrays` (shapes and ranges checked)."""
        try:
            n, d = int(meta["n_nodes"]), int(meta["n_features"])
            if meta["node_ids"] is None:
                node_ids = np.asarray(arrays["node_ids"], dtype=np.int64)
            else:
                node_ids = np.asarray([str(v) for v in meta["node_ids"]], dtype=object)
            if meta["sparse"]:
                (rows, cols), values = arrays["features.indices"], arrays["features.values"]
                if len(values) and (rows.min() < 0 or rows.max() >= n or cols.max() >= d):
                    raise ValueError("feature indices out of range")
                features = sp.csr_matrix(
                    (values.astype(np.float32), (rows, cols)), shape=(n, d), dtype=np.float32
                )
            else:
                features = np.asarray(arrays["features.dense"], dtype=np.float32)
            edge_index = np.asarray(arrays["edge_index"], dtype=np.int64)
            names = tuple(str(v) for v in meta.get("feature_names", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: not a readable graph ({exc})") from None
        if len(node_ids) != n or features.shape != (n, d) or edge_index.ndim != 2:
            raise ValueError(f"{source}: inconsistent graph shapes")
        if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= n):
            raise ValueError(f"{source}: edge index out of range for {n} nodes")
        return cls(node_ids, features, edge_index, names)

    def digest(self) -> str:
        """SHA-256 of the node ids, features and edges (equal graphs, equal digests)."""
        h = hashlib.sha256()
        arrays, meta = self.to_arrays()
        if self.is_sparse:  # canonical COO: row-major order, duplicates summed
            csr = self.features.copy()
            csr.sum_duplicates()
            csr.sort_indices()
            coo = csr.tocoo()
            arrays["features.indices"] = np.stack([coo.row, coo.col]).astype(np.int64)
            arrays["features.values"] = coo.data.astype(np.float32)
        h.update(repr(sorted((k, v) for k, v in meta.items() if k != "feature_names")).encode())
        for key in sorted(arrays):
            h.update(key.encode())
            h.update(np.ascontiguousarray(arrays[key]).tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        kind = "sparse" if self.is_sparse else "dense"
        return (
            f"Graph({self.n_nodes} nodes, {self.n_features} {kind} features, "
            f"{self.n_edges // 2} edges)"
        )


# ---------------------------------------------------------------------- helpers
def _few(values, k: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:k])
    return f"[{shown}{', ...' if len(values) > k else ''}]"


def _id_array(ids: pd.Series) -> np.ndarray:
    if pd.api.types.is_integer_dtype(ids):
        return ids.to_numpy(dtype=np.int64)
    return ids.astype(str).to_numpy(dtype=object)


def _features(nodes, node_column, feature_columns, exclude, name):
    if feature_columns is None:
        skip = {node_column, *exclude}
        feature_columns = [
            c
            for c in nodes.columns
            if c not in skip
            and (pd.api.types.is_numeric_dtype(nodes[c]) or pd.api.types.is_bool_dtype(nodes[c]))
        ]
    else:
        feature_columns = list(feature_columns)
        missing = [c for c in feature_columns if c not in nodes.columns]
        if missing:
            raise ValueError(f"{name}: feature columns {missing} are missing")
        text = [c for c in feature_columns if not pd.api.types.is_numeric_dtype(nodes[c])]
        if text:
            raise ValueError(
                f"{name}: features must be numeric, however: column {text[0]!r} has dtype "
                f"{nodes[text[0]].dtype}"
            )
    if not feature_columns:
        raise ValueError(f"{name}: no numeric feature columns besides {node_column!r}")
    values = nodes[feature_columns].to_numpy(dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        column = feature_columns[int(np.argwhere(bad)[0, 1])]
        raise ValueError(f"{name}: features must be finite, however: column {column!r}")
    names = tuple(str(c) for c in feature_columns)
    if np.count_nonzero(values) < SPARSE_DENSITY * values.size:
        return sp.csr_matrix(values), names
    return values, names


def _edge_index(edges, node_ids, source, target, name) -> np.ndarray:
    for column in (source, target):
        if column not in edges.columns:
            raise ValueError(
                f"{name}: edge column {column!r} is missing; columns: {list(edges.columns)}"
            )
    if len(edges) == 0:
        raise ValueError(f"{name}: the edge table is empty; a graph member needs edges")
    index = pd.Index(node_ids)
    ends = []
    for column in (source, target):
        values = edges[column]
        values = values.to_numpy() if node_ids.dtype.kind in "iu" else values.astype(str).to_numpy()
        position = index.get_indexer(values)
        if (position < 0).any():
            unknown = values[position < 0]
            raise ValueError(
                f"{name}: column {column!r} must name nodes of the node table, however: "
                f"{len(unknown)} unknown ids, such as {_few(unknown)}"
            )
        ends.append(position.astype(np.int64))
    s, t = ends
    keep = s != t  # self loops: the layers add their own where they want them
    s, t = np.concatenate([s[keep], t[keep]]), np.concatenate([t[keep], s[keep]])
    if len(s) == 0:
        raise ValueError(f"{name}: every edge is a self loop; a graph member needs edges")
    pairs = np.unique(s * len(node_ids) + t)  # sorted by source, then target; no duplicates
    return np.stack([pairs // len(node_ids), pairs % len(node_ids)]).astype(np.int64)
