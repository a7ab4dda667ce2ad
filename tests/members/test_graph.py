"""Graph members on a tiny planted-community graph: references, round trips, errors."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("torch_geometric")

import torch
from safetensors.numpy import load_file, save_file

from ensemblex.graphs import Graph
from ensemblex.members import FoldContext, load_member
from ensemblex.members.graph import (
    ARCHITECTURES,
    LP_SMOOTHING,
    GraphMember,
    graph_members,
)
from ensemblex.members.registry import family_class
from ensemblex.preprocessing import Schema

N, K, D = 60, 3, 30
CONTEXT = FoldContext("multiclass", Schema([], []), K, 1)
FAST = {"epochs": 40, "hidden": 8}  # tiny budgets: the tests check behaviour, not accuracy


def planted(seed=0, n=N, sparse=True):
    """``n`` nodes in ``K`` communities (edges mostly inside one), bag-of-words features that
    hint at the community weakly; returns the node table and the graph."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % K
    same = label[:, None] == label[None, :]
    upper = np.triu(rng.random((n, n)) < np.where(same, 0.2, 0.01), k=1)
    source, target = np.nonzero(upper)
    words = (rng.random((n, D)) < 0.05) | (
        (np.arange(D) % K == label[:, None]) & (rng.random((n, D)) < 0.15)
    )
    nodes = pd.DataFrame(words.astype(float), columns=[f"w{j}" for j in range(D)])
    nodes.insert(0, "node", [f"n{i}" for i in range(n)])
    nodes["label"] = label
    edges = pd.DataFrame(
        {"source": nodes["node"].to_numpy()[source], "target": nodes["node"].to_numpy()[target]}
    )
    graph = Graph.from_frames(nodes, edges, exclude=["label"])
    if not sparse:
        graph = Graph(graph.node_ids, graph.dense_features(), graph.edge_index, graph.feature_names)
    return nodes, graph


NODES, GRAPH = planted()
TRAIN = NODES.groupby("label").head(4)  # 4 labelled nodes per class
TEST = NODES.drop(TRAIN.index)


def make(architecture, graph=GRAPH, **kwargs):
    params = {"n_seeds": 2} if architecture == "label_propagation" else {"n_seeds": 2, **FAST}
    params.update(kwargs)
    return GraphMember(architecture, graph, architecture, **params)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_fits_predicts_and_round_trips(architecture, tmp_path):
    template = make(architecture)
    fitted = template.fit(TRAIN, TRAIN["label"].to_numpy(), CONTEXT)
    assert template.states_ is None and template.n_classes_ is None  # template unchanged
    pred = fitted.predict(TEST)
    n_columns = 1 if architecture == "label_propagation" else 2
    assert pred.shape == (len(TEST), n_columns, K)
    assert fitted.column_names() == (
        [architecture] if n_columns == 1 else [f"{architecture}.0", f"{architecture}.1"]
    )
    np.testing.assert_allclose(pred.sum(axis=2), 1.0, atol=1e-6)
    assert (pred > 0).all()
    if n_columns == 2:  # two seeds, two different networks
        assert not np.allclose(pred[:, 0], pred[:, 1])
    # the same seed gives the same numbers
    again = make(architecture).fit(TRAIN, TRAIN["label"].to_numpy(), CONTEXT)
    np.testing.assert_array_equal(again.predict(TEST), pred)

    folder = fitted.save(tmp_path / architecture)
    assert {p.name for p in folder.iterdir()} == {
        "member.json",
        "model.safetensors",
        "graph.safetensors",
    }
    meta = json.loads((folder / "member.json").read_text())
    assert meta["family"] == "graph" and meta["settings"]["graph_digest"] == GRAPH.digest()
    loaded = load_member(folder)
    assert isinstance(loaded, GraphMember) and loaded.graph.digest() == GRAPH.digest()
    np.testing.assert_allclose(loaded.predict(TEST), pred, rtol=0, atol=1e-7)
    assert loaded.fingerprint() == fitted.fingerprint()


@pytest.mark.parametrize("architecture", ["gcn", "appnp", "sgc", "label_propagation"])
def test_graph_models_use_the_edges(architecture):
    """The communities are in the edges more than in the words: a graph model beats both
    chance (1/3) and the MLP on the words alone."""
    y = TEST["label"].to_numpy()
    settings = {} if architecture == "label_propagation" else {"epochs": 100}
    pred = make(architecture, **settings).fit(TRAIN, TRAIN["label"], CONTEXT).predict(TEST)
    accuracy = (pred.mean(axis=1).argmax(axis=1) == y).mean()
    mlp = make("mlp", epochs=100).fit(TRAIN, TRAIN["label"], CONTEXT).predict(TEST)
    assert accuracy >= 0.85
    assert accuracy > (mlp.mean(axis=1).argmax(axis=1) == y).mean() + 0.1


def dense_normalised_adjacency(edge_index, n, self_loops=True):
    A = np.zeros((n, n))
    A[edge_index[0], edge_index[1]] = 1.0
    if self_loops:
        A += np.eye(n)
    d = A.sum(axis=1)
    inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    return inv[:, None] * A * inv[None, :]


def test_gcn_predictions_equal_a_dense_brute_force_computation():
    """softmax(Â relu(Â X W1 + b1) W2 + b2), Â = D^-1/2 (A+I) D^-1/2, X row-normalised."""
    fitted = make("gcn").fit(TRAIN, TRAIN["label"], CONTEXT)
    A_hat = dense_normalised_adjacency(GRAPH.edge_index, N)
    X = GRAPH.dense_features().astype(np.float64)
    X = X / np.where(X.sum(axis=1) > 0, X.sum(axis=1), 1.0)[:, None]
    for seed, state in enumerate(fitted.states_):
        W1, b1 = state["first.lin.weight"].T, state["first.bias"]
        W2, b2 = state["second.lin.weight"].T, state["second.bias"]
        H = np.maximum(A_hat @ X @ W1 + b1, 0.0)
        logits = A_hat @ H @ W2 + b2
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(fitted.predict(NODES)[:, seed], expected, atol=1e-5)


def test_sage_first_layer_equals_the_mean_over_neighbours():
    fitted = make("sage", n_seeds=1).fit(TRAIN, TRAIN["label"], CONTEXT)
    net = fitted.network()
    net.load_state_dict({k: torch.as_tensor(v) for k, v in fitted.states_[0].items()})
    x_sparse, edge_index = fitted._inputs()
    x = x_sparse.to_dense()
    # torch_geometric's own SAGEConv on dense features
    np.testing.assert_allclose(
        net.first(x, edge_index).detach().numpy(),
        _sage_reference(fitted.states_[0], x.numpy(), GRAPH.edge_index),
        atol=1e-5,
    )
    # the member's forward on sparse features is the same network
    net.eval()
    with torch.no_grad():
        sparse_out, dense_out = net(x_sparse, edge_index), net(x, edge_index)
    np.testing.assert_allclose(sparse_out.numpy(), dense_out.numpy(), atol=1e-5)


def _sage_reference(state, x, edge_index):
    A = np.zeros((len(x), len(x)))
    A[edge_index[1], edge_index[0]] = 1.0
    degree = A.sum(axis=1, keepdims=True)
    mean = np.where(degree > 0, A @ x / np.where(degree > 0, degree, 1.0), 0.0)
    return (
        mean @ state["first.lin_l.weight"].T
        + state["first.lin_l.bias"]
        + (x @ state["first.lin_r.weight"].T)
    )


def test_sparse_and_dense_graphs_give_the_same_network_outputs():
    _, dense_graph = planted(sparse=False)
    for architecture in ("gcn", "gat", "appnp", "mlp"):
        sparse_member = make(architecture).fit(TRAIN, TRAIN["label"], CONTEXT)
        dense_member = make(architecture, graph=dense_graph)
        dense_member = dense_member.fit(TRAIN, TRAIN["label"], CONTEXT)
        assert not np.allclose(dense_member.predict(TEST), sparse_member.predict(TEST))
        dense_member.states_ = sparse_member.states_  # same weights, other storage
        dense_member.proba_ = None
        np.testing.assert_allclose(
            dense_member.predict(TEST), sparse_member.predict(TEST), atol=1e-5
        )


def test_label_propagation_equals_the_closed_form():
    alpha = 0.8
    fitted = make("label_propagation", alpha=alpha).fit(TRAIN, TRAIN["label"], CONTEXT)
    S = dense_normalised_adjacency(GRAPH.edge_index, N, self_loops=False)
    Y = np.zeros((N, K))
    Y[GRAPH.positions(TRAIN["node"]), TRAIN["label"]] = 1.0
    F = (1 - alpha) * np.linalg.inv(np.eye(N) - alpha * S) @ Y
    prior = np.bincount(TRAIN["label"], minlength=K) / len(TRAIN)
    mass = F.sum(axis=1, keepdims=True)
    shares = np.where(mass > 0, F / np.where(mass > 0, mass, 1.0), prior)
    expected = (1 - LP_SMOOTHING) * shares + LP_SMOOTHING * prior
    np.testing.assert_allclose(fitted.predict(NODES)[:, 0], expected, atol=1e-10)
    # an isolated node gets the training prior
    nodes = pd.concat([NODES, NODES.iloc[[0]].assign(node="lonely")], ignore_index=True)
    edges = pd.DataFrame(
        {
            "source": NODES["node"].to_numpy()[GRAPH.edge_index[0]],
            "target": NODES["node"].to_numpy()[GRAPH.edge_index[1]],
        }
    )
    lonely = Graph.from_frames(nodes, edges, exclude=["label"])
    member = GraphMember("lp", lonely, "label_propagation").fit(TRAIN, TRAIN["label"], CONTEXT)
    np.testing.assert_allclose(member.predict(nodes.tail(1))[0, 0], prior)


def test_unknown_nodes_and_bad_input_are_refused():
    fitted = make("gcn", n_seeds=1).fit(TRAIN, TRAIN["label"], CONTEXT)
    with pytest.raises(ValueError, match=r"node ids must be nodes of the graph.*'ghost'"):
        fitted.predict(pd.DataFrame({"node": ["n1", "ghost"]}))
    with pytest.raises(ValueError, match="node column 'node'"):
        fitted.predict(TEST.drop(columns="node"))
    with pytest.raises(ValueError, match="graph members classify nodes"):
        make("gcn").fit(TRAIN, TRAIN["label"], FoldContext("regression", Schema([], [])))
    with pytest.raises(ValueError, match=r"class code in 0..2, however: 2 labels from 0 to 3"):
        make("gcn").fit(TRAIN.iloc[:2], np.array([0, 3]), CONTEXT)
    with pytest.raises(ValueError, match="at least one class code"):
        make("label_propagation").fit(TRAIN.iloc[:0], np.array([], dtype=int), CONTEXT)
    with pytest.raises(ValueError, match="one label per row"):
        make("gcn").fit(TRAIN, TRAIN["label"][:3], CONTEXT)
    with pytest.raises(ValueError, match="architecture must be one of"):
        GraphMember("x", GRAPH, "transformer")
    with pytest.raises(TypeError, match="graph must be an ensemblex.graphs.Graph"):
        GraphMember("x", NODES, "gcn")
    with pytest.raises(ValueError, match="n_seeds must be an int >= 1"):
        GraphMember("x", GRAPH, "gcn", n_seeds=0)
    with pytest.raises(ValueError, match="is not fitted"):
        make("gcn").predict(TEST)


def test_a_different_graph_is_refused_on_load(tmp_path, rehash):
    fitted = make("sgc", n_seeds=1).fit(TRAIN, TRAIN["label"], CONTEXT)
    folder = fitted.save(tmp_path / "sgc")
    path = folder / "graph.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        metadata = fh.metadata()
    arrays = load_file(str(path))
    arrays["edge_index"] = arrays["edge_index"][:, 2:]  # one edge fewer (both directions)
    save_file(arrays, str(path), metadata=metadata)
    with pytest.raises(ValueError, match="damaged"):  # the member.json digests
        load_member(folder)
    rehash(folder)  # a tamperer rewrites them: the graph digest still refuses it
    with pytest.raises(ValueError, match="graph digest .* differs"):
        load_member(folder)


def test_zoo_registry_and_threads():
    members = graph_members(GRAPH, "multiclass", random_state=3, n_seeds=4)
    assert [m.name for m in members] == list(ARCHITECTURES)
    assert [m.n_columns() for m in members] == [4, 4, 4, 4, 4, 4, 1]
    assert members[0].seeds() == [3000, 3001, 3002, 3003]
    assert family_class("graph") is GraphMember
    with pytest.raises(ValueError, match="task='regression'"):
        graph_members(GRAPH, "regression")
    before = torch.get_num_threads()
    make("gcn", n_seeds=1).fit(
        TRAIN, TRAIN["label"], FoldContext("multiclass", Schema([], []), K, 1)
    )
    assert torch.get_num_threads() == before
    # settings: published defaults, overridden per member
    assert GraphMember("g", GRAPH, "gat").settings()["heads"] == 8
    assert GraphMember("g", GRAPH, "gcn", hidden=32).settings()["hidden"] == 32
    assert "hidden=32" in repr(GraphMember("g", GRAPH, "gcn", hidden=32))
    sparse_graph = GRAPH
    assert sp.issparse(sparse_graph.features)


def test_appnp_propagation_equals_torch_geometric_in_eval_and_drops_edges_in_training():
    from torch_geometric.nn import APPNP

    fitted = make("appnp", n_seeds=1).fit(TRAIN, TRAIN["label"], CONTEXT)
    net = fitted.network()
    h = torch.randn(N, K, generator=torch.Generator().manual_seed(0))
    edge_index = torch.as_tensor(GRAPH.edge_index)
    net.eval()
    reference = APPNP(K=10, alpha=0.1)(h, edge_index)
    np.testing.assert_allclose(
        net._personalised_pagerank(h, edge_index).detach().numpy(), reference.numpy(), atol=1e-5
    )
    net.edge_dropout = 0.5  # the paper's setting (the default is 0: see DEFAULTS)
    net.train()  # dropout on the adjacency, drawn afresh each step: the mean stays put
    torch.manual_seed(0)
    runs = torch.stack([net._personalised_pagerank(h, edge_index) for _ in range(400)])
    assert not torch.allclose(runs[0], reference)
    assert (runs.mean(0) - reference).abs().mean() < 0.1 * reference.abs().mean()
