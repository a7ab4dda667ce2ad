"""`ensemblex run` on what is not a plain table: a graph (--edges, a predefined split) and a
table with free text beside numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemblex.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def planted_graph(tmp_path_factory):
    """120 nodes in 3 communities (edges mostly inside one), weak word features; a split
    column with train/val/test nodes and unlabelled ones whose label is missing."""
    rng = np.random.default_rng(1)
    n, k, d = 120, 3, 20
    label = np.arange(n) % k
    same = label[:, None] == label[None, :]
    source, target = np.nonzero(np.triu(rng.random((n, n)) < np.where(same, 0.15, 0.01), k=1))
    words = (rng.random((n, d)) < 0.05) | (
        (np.arange(d) % k == label[:, None]) & (rng.random((n, d)) < 0.2)
    )
    nodes = pd.DataFrame(words.astype(float), columns=[f"w{j}" for j in range(d)])
    nodes.insert(0, "node", np.arange(n) * 7 + 3)  # ids that are not row numbers
    split = np.array(["train"] * 30 + ["val"] * 30 + ["test"] * 40 + ["unlabeled"] * 20)
    nodes["split"] = split
    nodes["label"] = np.where(split == "unlabeled", np.nan, label)
    folder = tmp_path_factory.mktemp("graph")
    nodes.to_csv(folder / "nodes.csv", index=False)
    edges = pd.DataFrame(
        {"source": nodes["node"].to_numpy()[source], "target": nodes["node"].to_numpy()[target]}
    )
    edges.to_csv(folder / "edges.csv", index=False)
    return folder, label


def test_a_graph_run_fits_members_on_train_nodes_and_the_combiner_on_val_nodes(planted_graph):
    folder, label = planted_graph
    out = folder / "run"
    args = [
        "run",
        str(folder / "nodes.csv"),
        "--edges",
        str(folder / "edges.csv"),
        "--target",
        "label",
        "--zoo",
        "fast",
        "--jobs",
        "1",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "graph: 120 nodes" in result.output
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["folds"] == "predefined"
    assert summary["rows"] == {"train": 60, "test": 40}
    members = {r["model"] for r in summary["leaderboard"] if r["kind"] == "member"}
    assert {"gcn.0", "gcn.2", "gat.1", "appnp.0", "label_propagation"} <= members
    assert len(pd.read_parquet(out / "oof.parquet")) == 30  # the val nodes only
    # communities are found from 30 labelled nodes: far above chance (1/3)
    assert summary["deployed"]["test_accuracy"] > 0.7
    # predict reads the same node table (target and split columns left out)
    predicted = runner.invoke(
        app,
        [
            "predict",
            str(out),
            str(folder / "nodes.csv"),
            "--id",
            "node",
            "--out",
            str(folder / "p.csv"),
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    frame = pd.read_csv(folder / "p.csv")
    test = slice(60, 100)
    accuracy = np.mean(frame["prediction"].to_numpy()[test] == label[test])
    assert accuracy == pytest.approx(summary["deployed"]["test_accuracy"])


def test_a_mixed_table_gets_text_and_tabular_members(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    spam = rng.random(n) < 0.4
    words = np.where(
        spam[:, None], ["win", "prize", "free", "claim"], ["see", "you", "at", "lunch"]
    )
    text = [" ".join(rng.choice(row, 4)) + f" message {i}" for i, row in enumerate(words)]
    frame = pd.DataFrame({"text": text, "length": rng.normal(size=n), "spam": spam})
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            str(tmp_path / "mixed.csv"),
            "--target",
            "spam",
            "--zoo",
            "fast",
            "--folds",
            "3",
            "--jobs",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "text columns, read by the text members: ['text']" in result.output
    summary = json.loads((out / "leaderboard.json").read_text())
    members = [r["model"] for r in summary["leaderboard"] if r["kind"] == "member"]
    assert {"tfidf_words", "tfidf_chars", "lgbm", "linear"} <= set(members)
    assert "text" in summary["dropped_columns"]  # the tabular encodings leave it out
    assert summary["columns"]["numeric"] == ["length"]
    assert summary["deployed"]["test_accuracy"] > 0.9
