"""The compiled preprocessors give scikit-learn's numbers exactly, or step aside."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

from ensemblex.compiled_encoding import CompiledEncoder
from ensemblex.preprocessing import ENCODINGS, infer_schema, make_preprocessor


@pytest.fixture(scope="module")
def churn(churn_table):
    X = churn_table.drop(columns="Exited").copy()
    # missing numbers and categories, and a rare category (grouped as infrequent one-hot)
    X.loc[X.index[:40], "Age"] = np.nan
    X.loc[X.index[40:60], "Geography"] = None
    X.loc[X.index[60:63], "Gender"] = "Other"
    return X


@pytest.mark.parametrize("encoding", [e for e in ENCODINGS if e != "raw"])
def test_compiled_encoding_equals_scikit_learn(churn, encoding):
    schema = infer_schema(churn)
    X = schema.check(churn)
    pre = make_preprocessor(schema, encoding).fit(X[:1000])
    compiled = CompiledEncoder.from_fitted(pre)
    assert compiled is not None
    new = X[1000:].copy()
    new.loc[new.index[:5], "Geography"] = "Atlantis"  # unknown
    new.loc[new.index[5:10], "CreditScore"] = np.nan
    expected = pre.transform(new)
    got = compiled.transform(new)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    for i in (0, 5, 7):  # one row at a time, as a server sends them
        np.testing.assert_array_equal(compiled.transform(new.iloc[[i]]), expected[[i]])


def test_rows_it_does_not_handle_fall_back(churn):
    schema = infer_schema(churn)
    X = schema.check(churn)
    pre = make_preprocessor(schema, "onehot").fit(X)
    compiled = CompiledEncoder.from_fitted(pre)
    odd = X.head(3).astype({"Geography": object})
    odd.loc[odd.index[0], "Geography"] = 7  # a category that is not text
    assert compiled.transform(odd) is None
    other = ColumnTransformer([("num", StandardScaler(), schema.numeric)]).fit(X)
    assert CompiledEncoder.from_fitted(other) is None  # not one make_preprocessor builds


def test_members_encode_through_the_compiled_form(tmp_path, churn):
    from ensemblex.members import load_member
    from ensemblex.members.base import FoldContext
    from ensemblex.members.zoo import zoo

    schema = infer_schema(churn)
    X = schema.check(churn)
    y = (X["Age"].fillna(40) > 40).to_numpy().astype(int)
    template = next(m for m in zoo("fast", "binary") if m.name == "linear")
    fitted = template.fit(X[:800], y[:800], FoldContext("binary", schema, 2))
    loaded = load_member(fitted.save(tmp_path / "linear"))
    assert loaded.compiled_encoder() is not None
    np.testing.assert_array_equal(loaded.predict(X[800:]), fitted.predict(X[800:]))
    assert isinstance(loaded.encode(X[800:]), np.ndarray)
    pd.testing.assert_frame_equal(X, schema.check(churn))  # the input is left as it was


def test_encoders_sharing_the_table_columns_give_their_own_numbers(churn):
    from ensemblex.compiled_encoding import TableColumns

    schema = infer_schema(churn)
    X = schema.check(churn)
    new = X[1000:1200].copy()
    new["Tenure"] = new["Tenure"].astype("Int64")  # an extension dtype (pandas' nullable)
    new.loc[new.index[3], "Balance"] = np.nan
    new.loc[new.index[4], "Gender"] = None
    columns = TableColumns(new)
    for encoding in ("native", "onehot", "ordinal"):
        pre = make_preprocessor(schema, encoding).fit(X[:1000])
        compiled = CompiledEncoder.from_fitted(pre)
        # (scikit-learn passes the nullable column through as objects: compare the numbers)
        expected = np.asarray(pre.transform(new), dtype=np.float64)
        np.testing.assert_array_equal(compiled.transform(new, columns), expected)
        np.testing.assert_array_equal(compiled.transform(new), expected)
