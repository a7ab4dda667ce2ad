"""The zoo a table gets: text members for free text, the tabular zoo beside them for the
other columns, the tabular zoo alone otherwise."""

import numpy as np
import pandas as pd

from ensemblex.members.zoo import has_tabular_features, table_zoo, zoo


def _notes(n: int) -> list[str]:
    return [f"customer {i} wrote about parcel number {i * 7} arriving late" for i in range(n)]


def test_a_text_table_gets_the_text_zoo_only():
    frame = pd.DataFrame({"note": _notes(40)})
    names = [m.name for m in table_zoo("default", "binary", frame)]
    assert names == ["tfidf_words", "tfidf_chars", "minilm_linear", "minilm_mlp"]
    assert all(m.column == "note" for m in table_zoo("fast", "binary", frame))


def test_a_mixed_table_gets_text_and_tabular_members():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"note": _notes(40), "age": rng.integers(18, 80, 40), "id": range(40)})
    names = [m.name for m in table_zoo("fast", "binary", frame)]
    assert names == ["tfidf_words", "tfidf_chars", "lgbm", "random_forest", "linear", "knn"]
    default = [m.name for m in table_zoo("default", "binary", frame)]
    assert default[:4] == ["tfidf_words", "tfidf_chars", "minilm_linear", "minilm_mlp"]
    assert default[4:] == [m.name for m in zoo("default", "binary")]


def test_a_table_without_text_gets_the_tabular_zoo_and_ids_are_no_features():
    frame = pd.DataFrame({"sex": ["Male", "Female"] * 20, "age": np.arange(40)})
    assert [m.name for m in table_zoo("fast", "regression", frame)] == [
        "lgbm",
        "random_forest",
        "linear",
        "knn",
    ]
    assert not has_tabular_features(pd.DataFrame({"code": [f"u{i}" for i in range(40)]}))
    assert has_tabular_features(frame)
