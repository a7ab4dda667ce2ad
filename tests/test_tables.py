import numpy as np
import pandas as pd
import pytest

from ensemblex import Predictions
from ensemblex.predictions import quantile_outputs
from ensemblex.tables import from_frame, read_data, read_table, to_frame, write_frame


def _wide(P: Predictions, y, target="target") -> pd.DataFrame:
    frame = to_frame(P)
    frame.insert(0, target, y)
    frame.insert(0, "id", np.arange(len(frame)) + 100)
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz"])
def test_round_trip(zoo, tmp_path, suffix):
    path = write_frame(_wide(zoo.oof, zoo.y), tmp_path / f"oof{suffix}")
    table = read_table(path, target="target", id_col="id")
    P = table.predictions
    assert P.task == zoo.oof.task
    assert P.members == zoo.oof.members
    np.testing.assert_allclose(P.values, zoo.oof.values, rtol=1e-12, atol=1e-12)
    assert [str(c) for c in np.asarray(P.classes if P.classes is not None else []).tolist()] == [
        str(c) for c in np.asarray(zoo.oof.classes if zoo.oof.classes is not None else []).tolist()
    ]
    np.testing.assert_array_equal(table.ids, np.arange(len(zoo.y)) + 100)
    assert table.y.tolist() == pd.Series(zoo.y).tolist()


def test_test_table_aligns_members_and_may_lack_target(binary_zoo, tmp_path):
    oof = read_table(
        write_frame(_wide(binary_zoo.oof, binary_zoo.y), tmp_path / "oof.csv"),
        target="target",
        id_col="id",
    )
    frame = to_frame(binary_zoo.test).iloc[:, ::-1]  # members in another order
    test = from_frame(
        frame,
        target="target",
        task="binary",
        classes=oof.predictions.classes,
        members=list(oof.predictions.members),
    )
    assert test.y is None
    np.testing.assert_allclose(test.predictions.values, binary_zoo.test.values, atol=1e-12)


def test_binary_positive_class():
    frame = pd.DataFrame({"y": ["no", "yes", "no"], "m": [0.2, 0.9, 0.4]})
    default = from_frame(frame, target="y").predictions
    assert default.classes.tolist() == ["no", "yes"]
    np.testing.assert_allclose(default.values[:, 0, 1], [0.2, 0.9, 0.4])
    flipped = from_frame(frame, target="y", positive="no").predictions
    assert flipped.classes.tolist() == ["yes", "no"]
    np.testing.assert_allclose(flipped.values[:, 0, 1], [0.2, 0.9, 0.4])


def test_task_detection():
    reg = pd.DataFrame({"y": [1.5, 2.0, 3.0], "m": [1.0, 2.0, 2.5]})
    assert from_frame(reg, target="y").predictions.task == "regression"
    binary = pd.DataFrame({"y": [0, 1, 1], "m": [0.1, 0.8, 0.6]})
    assert from_frame(binary, target="y").predictions.task == "binary"
    multi = pd.DataFrame({"y": [3, 5], "m:3": [0.9, 0.2], "m:5": [0.1, 0.8]})
    P = from_frame(multi, target="y").predictions
    assert (P.task, P.classes.tolist()) == ("multiclass", [3, 5])
    # a few whole numbers predicted by values outside [0, 1]: regression (as before)
    counts = pd.DataFrame({"y": [1, 3, 2, 3], "m": [1.2, 2.8, 2.1, 3.3]})
    assert from_frame(counts, target="y").predictions.task == "regression"
    # ... by values inside [0, 1]: probabilities or values? ambiguous, pass the task
    grades = pd.DataFrame({"y": [0, 2, 1, 2], "m": [0.1, 0.9, 0.5, 0.8]})
    with pytest.raises(ValueError, match="oof.csv: the target column 'y' holds 3 whole numbers"):
        from_frame(grades, target="y", source="oof.csv")
    P = from_frame(grades, target="y", task="regression").predictions
    np.testing.assert_array_equal(P.values[:, 0, 0], grades["m"])


@pytest.mark.parametrize(
    ("y", "message"),
    [([1.5], r"has 1 row\(s\)"), ([1, 1, 1], r"has one value \(1\)")],
)
def test_one_row_or_one_class_is_an_error_not_regression(y, message):
    frame = pd.DataFrame({"y": y, "a": np.linspace(0.1, 0.2, len(y))})
    with pytest.raises(ValueError, match=f"oof.csv: the target column 'y' {message}"):
        from_frame(frame, target="y", source="oof.csv")
    gauss = pd.DataFrame({"y": y, "a:mean": 0.5, "a:var": 1.0})
    with pytest.raises(ValueError, match=message):
        from_frame(gauss, target="y", source="oof.csv")


# ---------------------------------------------------------------- probabilistic regression
def _gaussian(n=6, seed=0):
    rng = np.random.default_rng(seed)
    values = np.stack([rng.normal(size=(n, 2)), rng.uniform(0.1, 2.0, size=(n, 2))], axis=2)
    return Predictions(values, ["a", "b"], "regression", outputs=("mean", "var"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_gaussian_table_round_trip(tmp_path, suffix):
    P = _gaussian()
    frame = to_frame(P)
    assert list(frame.columns) == ["a:mean", "a:var", "b:mean", "b:var"]
    np.testing.assert_array_equal(frame["b:var"], P.values[:, 1, 1])
    y = np.linspace(-1.0, 1.0, P.n_samples)
    frame.insert(0, "y", y)
    table = read_table(
        write_frame(frame.iloc[:, [0, 4, 1, 3, 2]], tmp_path / f"g{suffix}"), target="y"
    )
    Q = table.predictions
    assert (Q.task, Q.members, Q.outputs) == ("regression", ("b", "a"), ("mean", "var"))
    np.testing.assert_allclose(Q.select(["a", "b"]).values, P.values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(table.y, y)


def test_quantile_table_sorts_levels_and_aligns_a_test_table():
    levels = [0.1, 0.5, 0.9]
    values = np.sort(np.random.default_rng(1).normal(size=(5, 2, 3)), axis=2)
    P = Predictions(values, ["a", "b"], "regression", outputs=quantile_outputs(levels))
    frame = to_frame(P)
    assert list(frame.columns) == ["a:q0.1", "a:q0.5", "a:q0.9", "b:q0.1", "b:q0.5", "b:q0.9"]
    shuffled = frame[["b:q0.9", "a:q0.5", "b:q0.1", "a:q0.9", "a:q0.1", "b:q0.5"]]
    oof = from_frame(shuffled.assign(y=np.arange(5.0)), target="y").predictions
    assert oof.outputs == ("q0.1", "q0.5", "q0.9") and oof.members == ("b", "a")
    np.testing.assert_array_equal(oof.select(["a", "b"]).values, values)
    test = from_frame(
        frame, task="regression", members=list(oof.members), outputs=oof.outputs
    ).predictions
    np.testing.assert_array_equal(test.values, oof.values)
    with pytest.raises(ValueError, match="member 'a' does not predict the same outputs"):
        from_frame(frame.drop(columns="a:q0.5"), task="regression", outputs=oof.outputs)


def test_target_labels_named_like_outputs_stay_multiclass():
    frame = pd.DataFrame({"y": ["mean", "var"], "m:mean": [0.8, 0.3], "m:var": [0.2, 0.7]})
    P = from_frame(frame, target="y").predictions
    assert (P.task, P.classes.tolist()) == ("multiclass", ["mean", "var"])


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            {"a:mean": [0.1, 0.2, 0.3]},
            "member 'a' does not predict the same outputs .*no column a:var",
        ),
        (
            {"a:mean": [0.1, 0.2, 0.3], "a:var": [1.0, -1.0, 1.0]},
            "member 'a' has variance -1 at row 1; expected var >= 0",
        ),
        (
            {"a:mean": [0.1, 0.2, 0.3], "a:var": [1.0, np.nan, 1.0]},
            "column 'a:var' has NaN or inf at row 1",
        ),
        (
            {"a:mean": [0.1, 0.2, 0.3], "a:var": [1.0, 1.0, 1.0], "b": [0.1, 0.2, 0.3]},
            "column 'b' is not named '<member>:<output>'",
        ),
        (
            {"a:q0.1": [0.1, 0.2, 0.3], "a:q1.5": [1.0, 1.0, 1.0]},
            "quantile levels must be increasing and inside",
        ),
    ],
)
def test_bad_probabilistic_tables(columns, message):
    frame = pd.DataFrame({"y": [0.5, 1.5, 2.5], **columns})
    with pytest.raises(ValueError, match=message):
        from_frame(frame, target="y", source="g.csv")


# ---------------------------------------------------------------- bad input
def _frames():
    ok = pd.DataFrame({"y": [0, 1, 0, 1], "a": [0.1, 0.9, 0.3, 0.6], "b": [0.2, 0.7, 0.1, 0.8]})
    multi = pd.DataFrame({"y": ["x", "z", "x"], "a:x": [0.5, 0.2, 0.9], "a:z": [0.5, 0.8, 0.1]})
    return ok, multi


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("nan", "column 'a' has NaN or inf at row 2"),
        ("inf", "column 'b' has NaN or inf at row 0"),
        ("above_one", "column 'a' has 1.5 at row 1; expected probabilities in \\[0, 1\\]"),
        ("simplex", "member 'a' has probabilities summing to 1.2 at row 0"),
        ("unknown_target", "unknown target column 'label'"),
        ("unknown_id", "unknown id column 'key'"),
        ("class_without_member", "target classes \\['w'\\] are named by no member column"),
        ("empty", "no rows"),
        ("text_member", "column 'a' is not numeric"),
        ("no_members", "no member columns"),
        ("three_labels_binary", "has 3 classes"),
        ("uneven_blocks", "does not predict the same classes"),
    ],
)
def test_bad_frames(case, message):
    ok, multi = _frames()
    target = "y"
    kwargs = {}
    if case == "nan":
        frame = ok.assign(a=[0.1, 0.9, np.nan, 0.6])
    elif case == "inf":
        frame = ok.assign(b=[np.inf, 0.7, 0.1, 0.8])
    elif case == "above_one":
        frame = ok.assign(a=[0.1, 1.5, 0.3, 0.6])
    elif case == "simplex":
        frame = multi.assign(**{"a:x": [0.7, 0.2, 0.9]})
    elif case == "unknown_target":
        frame, target = ok, "label"
    elif case == "unknown_id":
        frame, kwargs = ok, {"id_col": "key"}
    elif case == "class_without_member":
        frame = multi.assign(y=["x", "w", "z"])
    elif case == "empty":
        frame = ok.iloc[:0]
    elif case == "text_member":
        frame = ok.assign(a=["p", "q", "r", "s"])
    elif case == "no_members":
        frame = ok[["y"]]
    elif case == "three_labels_binary":
        frame, kwargs = ok.assign(y=[0, 1, 2, 1]), {"task": "binary"}
    else:
        frame = multi.assign(**{"b:x": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=message):
        from_frame(frame, target=target, source="oof.csv", **kwargs)


def test_member_missing_from_test_or_extra(tmp_path):
    ok, _ = _frames()
    oof = from_frame(ok, target="y").predictions
    kwargs = dict(task="binary", classes=oof.classes, members=list(oof.members))
    with pytest.raises(ValueError, match="member 'b' of the out-of-fold table is missing here"):
        from_frame(ok[["a"]], source="test.csv", **kwargs)
    with pytest.raises(ValueError, match="member 'c' is not in the out-of-fold table"):
        from_frame(ok.assign(c=0.5), target="y", source="test.csv", **kwargs)


def test_duplicate_columns_csv_and_parquet(tmp_path):
    csv = tmp_path / "dup.csv"
    csv.write_text("y,a,a\n0,0.1,0.2\n1,0.8,0.9\n")
    with pytest.raises(ValueError, match=r"dup.csv: duplicate column names \['a'\]"):
        read_table(csv, target="y")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table([[0, 1], [0.1, 0.2], [0.3, 0.4]], names=["y", "a", "a"]), tmp_path / "dup.parquet"
    )
    with pytest.raises(ValueError, match="duplicate column names"):
        read_table(tmp_path / "dup.parquet", target="y")
    with pytest.raises(ValueError, match="duplicate column names"):
        from_frame(pd.DataFrame([[0, 0.1, 0.2]], columns=["y", "a", "a"]), target="y")


def test_unreadable_empty_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_table(tmp_path / "nope.csv", target="y")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv: the file is empty"):
        read_table(empty, target="y")
    header_only = tmp_path / "header.csv"
    header_only.write_text("y,a\n")
    with pytest.raises(ValueError, match="header.csv: the table has no rows"):
        read_table(header_only, target="y")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\x00\x01not parquet at all")
    with pytest.raises(ValueError, match="garbage.parquet: cannot read"):
        read_table(garbage, target="y")


# ---------------------------------------------------------------- raw data tables
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_read_data(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        pd.DataFrame({"age": [39.0, np.nan], "work": ["State-gov", None]}).to_parquet(path)
    else:
        text = "age,work\n39,State-gov\n?,?\n"
        if suffix.endswith(".gz"):
            import gzip

            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    frame = read_data(path)
    assert list(frame.columns) == ["age", "work"]
    assert frame["age"].dtype == np.float64  # "?" is missing, so the column stays numeric
    assert frame["age"].tolist()[0] == 39.0 and frame.isna().to_numpy()[1].all()


def test_read_data_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="nope.csv: no such file"):
        read_data(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv: the file is empty"):
        read_data(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="header.csv: the table has no rows"):
        read_data(tmp_path / "header.csv")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(ValueError, match=r"dup.csv: duplicate column names \['a'\]"):
        read_data(tmp_path / "dup.csv")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="bad.csv.gz: cannot read as a CSV or Parquet table"):
        read_data(tmp_path / "bad.csv.gz")


def test_write_frame_leaves_no_temp_files(tmp_path):
    write_frame(pd.DataFrame({"a": [1.0]}), tmp_path / "x.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]
