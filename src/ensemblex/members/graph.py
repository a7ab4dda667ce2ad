"""Graph members: node classifiers over a :class:`~ensemblex.graphs.Graph` (torch-geometric).

A graph member is transductive: the table's rows are nodes (its node column names them), the
member holds the whole graph (every node's features and the edges) and ``fit`` is given the
training rows: it trains on the whole graph with the loss on those nodes only, and never sees
another node's label. ``predict`` returns class probabilities for the rows' nodes. Every seed
of a network is one column of the predictions array (``name.0``, ``name.1``...), so ten seeds
of GCN are ten members a combiner can weigh.

Architectures, with the published hyper-parameters as defaults (fixed epoch budgets, no early
stopping on validation labels):

- ``"gcn"`` Kipf & Welling (2017): 16 hidden, dropout 0.5, lr 0.01, weight decay 5e-4 on
  the first layer, 200 epochs.
- ``"gat"`` Velickovic et al. (2018): 8 heads of 8 hidden, one output head, dropout 0.6 (on
  features and attention), lr 0.005, weight decay 5e-4.
- ``"sage"`` Hamilton et al. (2017), mean aggregation: 64 hidden, dropout 0.5.
- ``"appnp"`` Klicpera et al. (2019): a 64-hidden MLP, then K=10 steps of personalised
  PageRank with teleport alpha=0.1; weight decay 5e-3 on the first layer; dropout 0.7 on
  features for 300 epochs (chosen on validation nodes, see :data:`DEFAULTS`: the paper's
  dropout 0.5 on features and adjacency relies on early stopping).
- ``"sgc"`` Wu et al. (2019): K=2 propagation steps, then a linear layer (lr 0.2, weight
  decay 5e-6, 100 epochs).
- ``"mlp"``: the node features alone (64 hidden), the reference a graph must beat.
- ``"label_propagation"`` Zhou et al. (2004): the closed form
  ``F = (1 - alpha) (I - alpha S)^-1 Y`` with ``S = D^-1/2 A D^-1/2``; reads only the training
  labels and the edges, and is deterministic (one column whatever ``n_seeds``).

A fitted member saves each seed's weights (safetensors), its settings (JSON) and the graph
(safetensors: sparse features as COO indices and values), so a loaded member predicts without
the original files; loading checks the graph against the digest saved with the member.
"""

from __future__ import annotations

import functools
import inspect
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ensemblex.graphs import Graph
from ensemblex.members.base import FoldContext, Member

ARCHITECTURES = ("gcn", "gat", "sage", "appnp", "sgc", "mlp", "label_propagation")

# The published settings (see the module docstring). "decay": which parameters weight
# decay applies to; GCN and APPNP regularise only their first layer, as in the papers.
DEFAULTS: dict[str, dict] = {
    "gcn": dict(hidden=16, epochs=200, lr=0.01, weight_decay=5e-4, dropout=0.5, decay="first"),
    "gat": dict(
        hidden=8, heads=8, epochs=200, lr=0.005, weight_decay=5e-4, dropout=0.6, decay="all"
    ),
    "sage": dict(hidden=64, epochs=200, lr=0.01, weight_decay=5e-4, dropout=0.5, decay="all"),
    # APPNP: the paper's network (64 hidden, K=10, alpha .1, decay 5e-3 on the first layer)
    # stops early on validation labels (up to 10,000 epochs), which a member never sees. With
    # a fixed budget, among 9 settings (4 seeds each) the one with the best *validation*
    # accuracy on Cora was 300 epochs, dropout .7 and no adjacency dropout: val 79.8%, test
    # 83.0%; the paper's dropout .5 on features and adjacency for 500 epochs gave val 79.3%,
    # test 81.4% (10 seeds).
    "appnp": dict(
        hidden=64,
        epochs=300,
        lr=0.01,
        weight_decay=5e-3,
        dropout=0.7,
        K=10,
        alpha=0.1,
        edge_dropout=0.0,
        decay="first",
    ),
    # SGC: the authors' defaults (Tiiiger/SGC args.py: lr 0.2, 100 epochs, weight decay 5e-6)
    "sgc": dict(K=2, epochs=100, lr=0.2, weight_decay=5e-6, dropout=0.0, decay="all"),
    "mlp": dict(hidden=64, epochs=200, lr=0.01, weight_decay=5e-4, dropout=0.5, decay="all"),
    "label_propagation": dict(alpha=0.9),
}
TUNABLE = ("hidden", "epochs", "lr", "weight_decay", "dropout", "heads", "K", "alpha")

# Label propagation: mix of the propagated class shares and the training class prior, so
# that a node far from every labelled node gets the prior, and no class exactly 0.
LP_SMOOTHING = 0.01

MODEL_FILE = "model.safetensors"
GRAPH_FILE = "graph.safetensors"


class GraphMember(Member):
    """A node classifier over a graph, trained for ``n_seeds`` seeds (one column each).

    Parameters
    ----------
    name : str
    graph : Graph
        Every node's features and the edges; the table's rows name nodes in ``node_column``.
    architecture : {"gcn", "gat", "sage", "appnp", "sgc", "mlp", "label_propagation"}
    n_seeds : int, default 10
        Networks trained from different seeds (label propagation: always one column).
    hidden, epochs, lr, weight_decay, dropout, heads, K, alpha : optional
        Override the architecture's published settings (:data:`DEFAULTS`).
    random_state : int, default 0
        Seed ``s`` of the member trains with ``random_state * 1000 + s``.
    node_column : str, default "node"
        The table column holding node ids.
    normalize_features : bool, default True
        Scale each node's features to sum to one (as the papers do for bag-of-words).

    Examples
    --------
    >>> from ensemblex.preprocessing import Schema
    >>> nodes = pd.DataFrame({"node": range(6), "x": [1.0, 1, 1, 0, 0, 0]})
    >>> edges = pd.DataFrame({"source": [0, 1, 3, 4], "target": [1, 2, 4, 5]})
    >>> graph = Graph.from_frames(nodes, edges)
    >>> member = GraphMember("lp", graph, "label_propagation")
    >>> context = FoldContext("binary", Schema([], []), n_classes=2)
    >>> fitted = member.fit(nodes.iloc[[0, 3]], np.array([0, 1]), context)
    >>> fitted.predict(nodes).argmax(axis=2).ravel().tolist()
    [0, 0, 0, 1, 1, 1]
    """

    family = "graph"

    def __init__(
        self,
        name: str = "gcn",
        graph: Graph | None = None,
        architecture: str = "gcn",
        n_seeds: int = 10,
        hidden: int | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        dropout: float | None = None,
        heads: int | None = None,
        K: int | None = None,
        alpha: float | None = None,
        random_state: int = 0,
        node_column: str = "node",
        normalize_features: bool = True,
    ):
        super().__init__(name)
        if not isinstance(graph, Graph):
            raise TypeError(
                f"member {name!r}: graph must be an ensemblex.graphs.Graph, "
                f"however: graph={type(graph).__name__}"
            )
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"member {name!r}: architecture must be one of {ARCHITECTURES}, "
                f"however: architecture={architecture!r}"
            )
        if isinstance(n_seeds, bool) or not isinstance(n_seeds, int | np.integer) or n_seeds < 1:
            raise ValueError(f"member {name!r}: n_seeds must be an int >= 1, however: {n_seeds!r}")
        self.graph, self.architecture, self.n_seeds = graph, architecture, int(n_seeds)
        self.hidden, self.epochs, self.lr, self.weight_decay = hidden, epochs, lr, weight_decay
        self.dropout, self.heads, self.K, self.alpha = dropout, heads, K, alpha
        self.random_state, self.node_column = random_state, node_column
        self.normalize_features = normalize_features
        self.n_classes_ = None
        self.train_index_ = None  # graph positions of the training nodes
        self.train_labels_ = None
        self.states_ = None  # one state dict (name -> ndarray) per seed
        self.proba_ = None  # (n_nodes, n_columns, n_classes), computed once

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict:
        """The architecture's defaults with this member's overrides."""
        resolved = dict(DEFAULTS[self.architecture])
        for key in TUNABLE:
            if getattr(self, key) is not None:
                resolved[key] = getattr(self, key)
        return resolved

    def params(self) -> dict:
        """Constructor parameters besides ``name`` and ``graph`` (JSON-able)."""
        names = ("architecture", "n_seeds", *TUNABLE, "random_state", "node_column")
        return {k: getattr(self, k) for k in (*names, "normalize_features")}

    def n_columns(self) -> int:
        return 1 if self.architecture == "label_propagation" else self.n_seeds

    def seeds(self) -> list[int]:
        return [int(self.random_state) * 1000 + s for s in range(self.n_columns())]

    # ------------------------------------------------------------------ protocol
    def fit(self, X: pd.DataFrame, y: np.ndarray, context: FoldContext) -> GraphMember:
        if context.task not in ("binary", "multiclass"):
            raise ValueError(
                f"member {self.name!r}: graph members classify nodes, "
                f"however: task={context.task!r}"
            )
        index = self._positions(X)
        y = np.asarray(y)
        if len(y) != len(index):
            raise ValueError(
                f"member {self.name!r}: y must have one label per row of X, "
                f"however: {len(y)} labels for {len(index)} rows"
            )
        if len(y) == 0 or y.min() < 0 or y.max() >= context.n_classes:
            raise ValueError(
                f"member {self.name!r}: y must hold at least one class code in "
                f"0..{context.n_classes - 1}, however: {len(y)} labels"
                + (f" from {y.min()} to {y.max()}" if len(y) else "")
            )
        fitted = type(self)(self.name, self.graph, **self.params())
        fitted.task = context.task
        fitted.n_classes_ = int(context.n_classes)
        fitted.train_index_ = index
        fitted.train_labels_ = y.astype(np.int64)
        if self.architecture != "label_propagation":
            with _threads(context.n_threads):
                fitted.states_ = [fitted._train(seed) for seed in fitted.seeds()]
        return fitted

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.n_classes_ is None:
            raise ValueError(f"member {self.name!r} is not fitted")
        index = self._positions(X)
        if self.proba_ is None:
            self.proba_ = self._all_proba()
        return self.proba_[index]

    def _positions(self, X: pd.DataFrame) -> np.ndarray:
        if not isinstance(X, pd.DataFrame) or self.node_column not in X.columns:
            raise ValueError(
                f"member {self.name!r}: X must be a DataFrame with the node column "
                f"{self.node_column!r}"
            )
        ids = X[self.node_column]
        if self.graph.node_ids.dtype.kind not in "iu":
            ids = ids.astype(str)
        return self.graph.positions(ids.to_numpy(), f"member {self.name!r}: node ids")

    # ------------------------------------------------------------------ training
    def _inputs(self):
        """Node features as a float32 tensor (rows summing to one if asked) and the edges.

        Sparse features stay sparse (a COO tensor) for the layers whose first step is a
        linear map of the features: Cora's bag of words has 1.3% non-zeros, so the first
        layer costs 75 times less than on the dense matrix. SGC propagates the features
        themselves first (once, cached), so it reads them dense.
        """
        import torch

        features = self.graph.features
        if self.normalize_features:
            sums = np.asarray(abs(features).sum(axis=1), dtype=np.float64).ravel()
            scale = np.divide(1.0, sums, out=np.ones_like(sums), where=sums > 0)
            if sp.issparse(features):
                features = sp.diags(scale) @ features
            else:
                features = features * scale[:, None]
        edge_index = torch.as_tensor(self.graph.edge_index)
        if sp.issparse(features) and self.architecture != "sgc":
            coo = sp.coo_matrix(features)
            indices = torch.as_tensor(np.stack([coo.row, coo.col]).astype(np.int64))
            values = torch.as_tensor(coo.data.astype(np.float32))
            x = torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True)
            return x.coalesce(), edge_index
        if sp.issparse(features):
            features = features.toarray()
        return torch.as_tensor(np.asarray(features, dtype=np.float32)), edge_index

    def network(self):
        """An untrained network for this member's architecture (torch ``nn.Module``)."""
        s = self.settings()
        return _network_class()(
            self.architecture,
            self.graph.n_features,
            self.n_classes_,
            s.get("hidden", 0),
            s.get("heads", 1),
            s.get("dropout", 0.0),
            s.get("K", 0),
            s.get("alpha", 0.0),
            s.get("edge_dropout", 0.0),
        )

    def _train(self, seed: int) -> dict[str, np.ndarray]:
        import torch
        import torch.nn.functional as F

        s = self.settings()
        x, edge_index = self._inputs()
        train = torch.as_tensor(self.train_index_)
        labels = torch.as_tensor(self.train_labels_)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self.network()
            first = list(net.first.parameters())
            rest = [p for p in net.parameters() if all(p is not q for q in first)]
            decay_rest = s["weight_decay"] if s["decay"] == "all" else 0.0
            groups = [{"params": first, "weight_decay": s["weight_decay"]}]
            if rest:
                groups.append({"params": rest, "weight_decay": decay_rest})
            optimizer = torch.optim.Adam(groups, lr=s["lr"])
            net.train()
            for _ in range(int(s["epochs"])):
                optimizer.zero_grad()
                loss = F.cross_entropy(net(x, edge_index)[train], labels)
                loss.backward()
                optimizer.step()
        return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}

    def _all_proba(self) -> np.ndarray:
        """Probabilities ``(n_nodes, n_columns, n_classes)`` for every node of the graph."""
        if self.architecture == "label_propagation":
            return self._label_propagation()[:, None, :]
        import torch

        x, edge_index = self._inputs()
        out = []
        for state in self.states_:
            net = self.network()
            net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
            net.eval()
            with torch.no_grad():
                out.append(torch.softmax(net(x, edge_index).double(), dim=1).numpy())
        return np.stack(out, axis=1)

    def _label_propagation(self) -> np.ndarray:
        """Zhou et al.'s closed form, class shares per node mixed with the training prior."""
        from scipy.sparse.linalg import splu

        n, k = self.graph.n_nodes, self.n_classes_
        alpha = float(self.settings()["alpha"])
        S = symmetric_normalized_adjacency(self.graph.edge_index, n)
        Y = np.zeros((n, k))
        Y[self.train_index_, self.train_labels_] = 1.0
        F = (1.0 - alpha) * splu((sp.identity(n, format="csc") - alpha * S).tocsc()).solve(Y)
        F = np.clip(F, 0.0, None)
        prior = np.bincount(self.train_labels_, minlength=k) / len(self.train_labels_)
        mass = F.sum(axis=1, keepdims=True)
        shares = np.where(mass > 0, F / np.where(mass > 0, mass, 1.0), prior)
        return (1.0 - LP_SMOOTHING) * shares + LP_SMOOTHING * prior

    # ------------------------------------------------------------------ saving
    def save_files(self, folder: Path) -> dict:
        from safetensors.numpy import save_file

        arrays, meta = self.graph.to_arrays()
        save_file(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()},
            str(folder / GRAPH_FILE),
            metadata={"graph": json.dumps(meta)},
        )
        tensors = {"train_index": self.train_index_, "train_labels": self.train_labels_}
        for s, state in enumerate(self.states_ or []):
            tensors.update({f"seed{s}.{k}": np.ascontiguousarray(v) for k, v in state.items()})
        save_file(tensors, str(folder / MODEL_FILE))
        return {
            "params": self.params(),
            "n_classes": self.n_classes_,
            "graph_digest": self.graph.digest(),
        }

    @classmethod
    def load_files(cls, folder, name, task, settings) -> GraphMember:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            from safetensors import safe_open

            with safe_open(str(folder / GRAPH_FILE), framework="np") as fh:
                meta = json.loads((fh.metadata() or {})["graph"])
            graph = Graph.from_arrays(
                load_file(str(folder / GRAPH_FILE)), meta, str(folder / GRAPH_FILE)
            )
            tensors = load_file(str(folder / MODEL_FILE))
            params, n_classes = dict(settings["params"]), int(settings["n_classes"])
            expected = str(settings["graph_digest"])
        except (OSError, KeyError, TypeError, ValueError, SafetensorError) as exc:
            raise ValueError(f"{folder}: not a readable graph member ({exc})") from None
        if graph.digest() != expected:
            raise ValueError(
                f"{folder / GRAPH_FILE}: graph digest {graph.digest()[:12]}... differs from "
                f"the one member {name!r} was trained on ({expected[:12]}...)"
            )
        member = cls(name, graph, **params)
        member.task, member.n_classes_ = task, n_classes
        member.train_index_ = tensors.pop("train_index").astype(np.int64)
        member.train_labels_ = tensors.pop("train_labels").astype(np.int64)
        if member.architecture != "label_propagation":
            member.states_ = []
            for s in range(member.n_columns()):
                prefix = f"seed{s}."
                state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                member.states_.append(state)
            try:
                member.proba_ = member._all_proba()
            except (RuntimeError, KeyError) as exc:
                raise ValueError(f"{folder / MODEL_FILE}: weights do not fit ({exc})") from None
        return member

    def fingerprint(self) -> list:
        return [self.name, self.family, repr(self), self.graph.digest()]

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params().items() if k != "architecture"}
        signature = inspect.signature(GraphMember.__init__).parameters
        base = {k: p.default for k, p in signature.items()}
        shown = ", ".join(f"{k}={v!r}" for k, v in changed.items() if base.get(k) != v)
        return (
            f"GraphMember({self.name!r}, {self.graph!r}, {self.architecture!r}"
            + (f", {shown}" if shown else "")
            + ")"
        )


def graph_members(
    graph: Graph, task: str, random_state: int = 0, n_seeds: int = 10, node_column: str = "node"
) -> list[Member]:
    """The default graph zoo: GCN, GAT, GraphSAGE, APPNP, SGC, an MLP on the node features
    (each ``n_seeds`` columns) and label propagation (one column).

    Examples
    --------
    >>> nodes = pd.DataFrame({"node": [0, 1, 2], "x": [1.0, 0.0, 1.0]})
    >>> g = Graph.from_frames(nodes, pd.DataFrame({"source": [0, 1], "target": [1, 2]}))
    >>> [m.name for m in graph_members(g, "multiclass")]
    ['gcn', 'gat', 'sage', 'appnp', 'sgc', 'mlp', 'label_propagation']
    """
    if task not in ("binary", "multiclass"):
        raise ValueError(f"graph members classify nodes, however: task={task!r}")
    return [
        GraphMember(
            arch,
            graph,
            arch,
            n_seeds=n_seeds,
            random_state=random_state,
            node_column=node_column,
        )
        for arch in ARCHITECTURES
    ]


def symmetric_normalized_adjacency(edge_index: np.ndarray, n: int) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` ``(n, n)`` of the edges (isolated nodes: a zero row)."""
    A = sp.csr_matrix((np.ones(edge_index.shape[1]), (edge_index[0], edge_index[1])), shape=(n, n))
    degree = np.asarray(A.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    return (sp.diags(inv) @ A @ sp.diags(inv)).tocsr()


@contextmanager
def _threads(n_threads: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n_threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _network_class():
    """The torch module class (built on first use, so importing this module needs no torch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch_geometric.nn import APPNP, GATConv, GCNConv, SAGEConv, SGConv

    class GraphNetwork(nn.Module):
        """Two layers (``first``, ``second``) and the architecture's propagation.

        Input: features ``(n_nodes, in_features)``, edges ``(2, n_edges)``; output: logits
        ``(n_nodes, n_classes)``.
        """

        def __init__(
            self,
            architecture,
            in_features,
            n_classes,
            hidden,
            heads,
            dropout,
            K,
            alpha,
            edge_dropout,
        ):
            super().__init__()
            self.architecture, self.dropout = architecture, float(dropout)
            self.ppr, self.edge_dropout, self.norm = None, float(edge_dropout), None
            if architecture == "gcn":
                self.first = GCNConv(in_features, hidden, cached=True)
                self.second = GCNConv(hidden, n_classes, cached=True)
            elif architecture == "gat":
                self.first = GATConv(in_features, hidden, heads=heads, dropout=dropout)
                self.second = GATConv(
                    hidden * heads, n_classes, heads=1, concat=False, dropout=dropout
                )
            elif architecture == "sage":
                self.first = SAGEConv(in_features, hidden)
                self.second = SAGEConv(hidden, n_classes)
            elif architecture == "sgc":
                self.first = SGConv(in_features, n_classes, K=K, cached=True)
                self.second = None
            else:  # mlp, appnp
                self.first = nn.Linear(in_features, hidden)
                self.second = nn.Linear(hidden, n_classes)
                if architecture == "appnp":
                    self.ppr = APPNP(K=K, alpha=alpha)

        def forward(self, x, edge_index):
            """Logits ``(n_nodes, n_classes)``; ``x`` dense or a sparse COO tensor."""
            if self.second is None:  # sgc: the propagated features, then a linear layer
                return self.first(x, edge_index)
            x = _dropout(x, self.dropout, self.training)
            if self.architecture == "sage":
                x = _sage_first(self.first, x, edge_index)
            elif self.architecture in ("gcn", "gat"):
                x = self.first(x, edge_index)
            else:
                x = self.first(x)
            x = F.elu(x) if self.architecture == "gat" else F.relu(x)
            x = F.dropout(x, self.dropout, self.training)
            if self.architecture in ("gcn", "gat", "sage"):
                return self.second(x, edge_index)
            x = self.second(x)
            return self._personalised_pagerank(x, edge_index) if self.ppr is not None else x

        def _personalised_pagerank(self, x, edge_index):
            """APPNP's K steps ``x <- (1 - alpha) Â x + alpha h`` with dropout on Â's entries
            drawn afresh at every step. (torch_geometric's ``APPNP(dropout=p)`` drops the
            already-dropped weights again at each step, so its weights grow as ``(1-p)^-K``.)
            """
            from torch_geometric.nn.conv.gcn_conv import gcn_norm

            if self.norm is None:  # Â = D^-1/2 (A + I) D^-1/2, computed once
                self.norm = gcn_norm(edge_index, None, x.size(0), False, True, dtype=x.dtype)
            edges, weights = self.norm
            h = x
            for _ in range(self.ppr.K):
                weight = F.dropout(weights, self.edge_dropout, self.training)
                x = self.ppr.propagate(edges, x=x, edge_weight=weight)
                x = x * (1 - self.ppr.alpha) + self.ppr.alpha * h
            return x

    def _dropout(x, p, training):
        """Dropout of a dense or sparse COO tensor (its stored values)."""
        if not x.is_sparse:
            return F.dropout(x, p, training)
        values = F.dropout(x.values(), p, training)
        return torch.sparse_coo_tensor(
            x.indices(), values, x.shape, is_coalesced=True, check_invariants=False
        )

    def _sage_first(conv, x, edge_index):
        """``SAGEConv`` (mean aggregation) with the linear maps before the mean: equal, as
        both are linear, and ``x`` may be sparse (the mean is then over hidden vectors)."""
        from torch_geometric.utils import scatter

        neighbours = F.linear(x, conv.lin_l.weight)[edge_index[0]]
        mean = scatter(neighbours, edge_index[1], dim=0, dim_size=x.shape[0], reduce="mean")
        return mean + conv.lin_l.bias + F.linear(x, conv.lin_r.weight)

    return GraphNetwork
