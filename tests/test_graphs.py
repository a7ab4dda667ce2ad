"""Graph: building from tables, its checks, its arrays and digest."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ensemblex.graphs import Graph


def tables(ids=("a", "b", "c", "d")):
    nodes = pd.DataFrame(
        {
            "node": list(ids),
            "w0": [1.0, 0.0, 0.0, 0.0],
            "w1": [0.0, 0.0, 2.0, 0.0],
            "w2": [0.0, 0.0, 0.0, 0.0],
            "label": [0, 1, 0, 1],
            "split": ["train", "val", "test", "train"],
        }
    )
    edges = pd.DataFrame(
        {"source": [ids[0], ids[1], ids[1], ids[2]], "target": [*list(ids[1:]), ids[2]]}
    )
    return nodes, edges


def test_edges_are_undirected_deduplicated_without_self_loops():
    nodes, edges = tables()
    # a->b, b->c, b->d (given twice, once each way), c->c (a self loop)
    edges = pd.DataFrame({"source": ["a", "b", "b", "d", "c"], "target": ["b", "c", "d", "b", "c"]})
    g = Graph.from_frames(nodes, edges, exclude=["label", "split"])
    assert g.node_ids.tolist() == ["a", "b", "c", "d"]
    assert g.feature_names == ("w0", "w1", "w2")
    pairs = set(map(tuple, g.edge_index.T.tolist()))
    assert pairs == {(0, 1), (1, 0), (1, 2), (2, 1), (1, 3), (3, 1)}
    assert g.n_edges == 6 and g.edge_index.dtype == np.int64
    assert g.edge_index[0].tolist() == sorted(g.edge_index[0].tolist())
    assert g.is_sparse  # 2 non-zeros of 12 cells
    np.testing.assert_array_equal(g.dense_features(), [[1, 0, 0], [0, 0, 0], [0, 2, 0], [0, 0, 0]])
    assert g.features.dtype == np.float32


def test_dense_features_stay_dense_and_integer_ids():
    nodes = pd.DataFrame({"node": [10, 20, 30], "x": [1.0, 2.0, 3.0], "y": [1.0, 1.0, 0.5]})
    g = Graph.from_frames(nodes, pd.DataFrame({"source": [10], "target": [30]}))
    assert not g.is_sparse and g.node_ids.dtype == np.int64
    assert g.edge_index.tolist() == [[0, 2], [2, 0]]
    assert g.positions([30, 10]).tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"node ids must be nodes of the graph.*such as \[40\]"):
        g.positions([40, 10])


@pytest.mark.parametrize("ids", [("a", "b", "c", "d"), (5, 7, 9, 11)])
def test_arrays_round_trip_and_digest(ids):
    nodes, edges = tables(ids)
    g = Graph.from_frames(nodes, edges, exclude=["label", "split"])
    arrays, meta = g.to_arrays()
    back = Graph.from_arrays(arrays, meta)
    assert back.digest() == g.digest()
    assert back.node_ids.tolist() == g.node_ids.tolist()
    np.testing.assert_array_equal(back.dense_features(), g.dense_features())
    np.testing.assert_array_equal(back.edge_index, g.edge_index)
    # a different edge, feature or id: a different digest
    other = Graph.from_frames(nodes, edges.iloc[:2], exclude=["label", "split"])
    assert other.digest() != g.digest()
    changed = nodes.assign(w0=[1.0, 0.0, 0.0, 0.5])
    assert Graph.from_frames(changed, edges, exclude=["label", "split"]).digest() != g.digest()
    dense = Graph(g.node_ids, g.dense_features(), g.edge_index)
    assert dense.digest() != g.digest()  # storage is part of what a member saved
    assert Graph(g.node_ids, sp.csr_matrix(g.dense_features()), g.edge_index).digest() == (
        g.digest()
    )


def test_from_arrays_rejects_out_of_range_edges():
    nodes, edges = tables()
    arrays, meta = Graph.from_frames(nodes, edges, exclude=["label", "split"]).to_arrays()
    arrays["edge_index"] = arrays["edge_index"] + 10
    with pytest.raises(ValueError, match="edge index out of range"):
        Graph.from_arrays(arrays, meta, "g.safetensors")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda n, e: (n, e.assign(target=["b", "c", "zz", "c"])),
            r"column 'target' must name nodes.*'zz'",
        ),
        (
            lambda n, e: (n.assign(node=["a", "a", "c", "d"]), e),
            r"node ids must be unique.*\['a'\]",
        ),
        (lambda n, e: (n, e.iloc[:0]), "the edge table is empty"),
        (lambda n, e: (n, e.rename(columns={"source": "from"})), "edge column 'source' is missing"),
        (lambda n, e: (n.drop(columns="node"), e), "node column 'node' is missing"),
        (
            lambda n, e: (n, pd.DataFrame({"source": ["a"], "target": ["a"]})),
            "every edge is a self loop",
        ),
    ],
)
def test_errors_name_the_table_and_column(change, message):
    nodes, edges = change(*tables())
    with pytest.raises(ValueError, match=message):
        Graph.from_frames(nodes, edges, exclude=["label", "split"])


def test_features_must_be_numeric_and_finite():
    nodes, edges = tables()
    with pytest.raises(ValueError, match="features must be numeric.*'split'"):
        Graph.from_frames(nodes, edges, feature_columns=["w0", "split"])
    with pytest.raises(ValueError, match=r"feature columns \['w9'\] are missing"):
        Graph.from_frames(nodes, edges, feature_columns=["w9"])
    with pytest.raises(ValueError, match="features must be finite.*'w1'"):
        Graph.from_frames(nodes.assign(w1=[0, np.nan, 1, 0]), edges, exclude=["label"])
    with pytest.raises(ValueError, match="no numeric feature columns"):
        Graph.from_frames(nodes[["node", "split"]], edges, exclude=["split"])
    with pytest.raises(TypeError, match="edges must be a pandas DataFrame"):
        Graph.from_frames(nodes, edges.to_numpy())


def test_from_csv_names_the_files(tmp_path):
    nodes, edges = tables()
    nodes.to_csv(tmp_path / "nodes.csv.gz", index=False)
    edges.to_csv(tmp_path / "edges.csv", index=False)
    g = Graph.from_csv(
        tmp_path / "nodes.csv.gz", tmp_path / "edges.csv", exclude=["label", "split"]
    )
    assert g.digest() == Graph.from_frames(nodes, edges, exclude=["label", "split"]).digest()
    edges.assign(source=["a", "q", "b", "c"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: column 'source' must name nodes.*'q'"):
        Graph.from_csv(tmp_path / "nodes.csv.gz", tmp_path / "bad.csv", exclude=["label"])
