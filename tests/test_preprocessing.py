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
    assert list(checked.columns) == [*schema.features, "customer_id", "name"]
    without_name = schema.check(table.drop(columns="name"))
    assert list(without_name.columns) == [*schema.features, "customer_id"]
    twice = pd.concat([table, table[["income"]].astype(str)], axis=1)
    with pytest.raises(ValueError, match=r"new.csv: columns \['income'\] appear more than once"):
        schema.check(twice, source="new.csv")
    pd.testing.assert_frame_equal(checked, table[::-1][checked.columns])  # values untouched


def test_a_few_text_cells_keep_a_column_numeric_and_become_missing(table, caplog):
    noisy = table.assign(age=table["age"].astype(object), income=table["income"].astype(str))
    noisy.loc[3, "age"] = "unknown"
    noisy.loc[5, "income"] = "n/a "
    schema = infer_schema(noisy, source="train.csv")
    assert schema.numeric == ["age", "income"] and "age" not in schema.categorical
    with caplog.at_level(logging.WARNING):
        checked = schema.check(noisy, source="train.csv")
    assert checked["age"].dtype == np.float64 and np.isnan(checked.loc[3, "age"])
    np.testing.assert_array_equal(checked["age"].drop(index=3), table["age"].drop(index=3))
    assert np.isnan(checked.loc[5, "income"])
    text = caplog.text
    assert "column 'age' is numeric but for 1 cell(s) ['unknown']" in text
    assert "column 'income' is numeric but for 1 cell(s) ['n/a ']" in text
    # more than 1% of cells that are not numbers: the column is text after all
    many = table.assign(age=table["age"].astype(object))
    many.loc[:2, "age"] = "unknown"
    assert "age" in infer_schema(many).categorical
    # a mostly-numeric ID-named column of repeated values is never dropped as an ID
    ids = table.assign(account_id=table["age"].astype(object))
    ids.loc[0, "account_id"] = "?"
    assert "account_id" in infer_schema(ids).numeric


def test_unusual_inputs_name_missing_columns_new_categories_and_far_values(table):
    from ensemblex.preprocessing import with_ranges

    schema = infer_schema(table)
    schema = with_ranges(schema, schema.check(table))
    assert schema.ranges["age"] == [table["age"].min(), table["age"].max()]
    assert schema.unusual_inputs(schema.check(table)) == []
    new = table.head(10).assign(income=np.nan)
    new.loc[[0, 1], "city"] = "oslo"
    new.loc[2, "age"] = 1000.0
    notes = schema.unusual_inputs(schema.check(new))
    low, high = schema.ranges["age"]
    assert notes == [
        f"column 'age' has 1 value(s) far outside the training range [{low:g}, {high:g}] "
        "(e.g. 1000)",
        "column 'income' is entirely missing",
        "column 'city' has 2 value(s) in categories never seen in training ['oslo']",
    ]
    # the ranges and categories travel with the schema
    assert Schema.from_dict(schema.to_dict()) == schema


def test_text_categories_mark_every_missing_cell_alike():
    """A JSON null (None) and a CSV blank (NaN) are the same missing category."""
    from ensemblex.preprocessing import TextCategories

    out = TextCategories().fit_transform(np.array([[None], [np.nan], [pd.NA], ["a"], [1]], object))
    assert [v if isinstance(v, str) else "missing" for v in out[:, 0]] == [
        "missing",
        "missing",
        "missing",
        "a",
        "1",
    ]
    assert all(v != v for v in out[:3, 0])  # NaN, which the encoders read as missing
