import logging

import numpy as np
import pandas as pd
import pytest

from ensemblex.members.sklearn import load_skops
from ensemblex.preprocessing import Schema, infer_schema, make_preprocessor


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n),
            "name": [f"person{i}" for i in range(n)],
            "age": rng.integers(18, 90, n).astype(float),
            "income": np.where(rng.uniform(size=n) < 0.1, np.nan, rng.normal(50, 10, n)),
            "city": rng.choice(["paris", "rome", None], n),
            "member": rng.choice([True, False], n),
        }
    )


def test_schema_drops_id_like_columns_with_a_warning(table, caplog):
    with caplog.at_level(logging.WARNING):
        schema = infer_schema(table, source="train.csv")
    assert schema.dropped == ["customer_id", "name"]
    assert schema.numeric == ["age", "income"]
    assert schema.categorical == ["city", "member"]
    assert "dropping ID-like columns" in caplog.text
    assert Schema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize("encoding", ["native", "ordinal", "onehot"])
def test_encodings_handle_missing_values_and_unseen_categories(table, encoding, tmp_path):
    import skops.io as sio

    schema = infer_schema(table)
    pre = make_preprocessor(schema, encoding)
    Z = pre.fit_transform(table)
    assert Z.shape[0] == len(table)
    if encoding != "native":
        assert not np.isnan(Z).any()
    unseen = table.head(3).assign(city=["tokyo", "oslo", "paris"])
    assert pre.transform(unseen).shape[1] == Z.shape[1]
    sio.dump(pre, tmp_path / "pre.skops")
    np.testing.assert_array_equal(load_skops(tmp_path / "pre.skops").transform(table), Z)


def test_schema_check_names_bad_columns(table):
    schema = infer_schema(table)
    with pytest.raises(ValueError, match=r"new.csv: missing columns \['age'\]"):
        schema.check(table.drop(columns="age"), source="new.csv")
    with pytest.raises(ValueError, match=r"unexpected columns \['shoe_size'\]"):
        schema.check(table.assign(shoe_size=42), source="new.csv")
    wrong_dtype = "column 'income' has dtype (object|str); expected numbers"  # pandas 2 | 3
    with pytest.raises(ValueError, match=wrong_dtype):
        schema.check(table.assign(income="high"), source="new.csv")
    checked = schema.check(table[::-1].copy())
    assert list(checked.columns) == schema.features + ["customer_id", "name"]
    assert list(schema.check(table.drop(columns="name")).columns) == [*schema.features, "customer_id"]
