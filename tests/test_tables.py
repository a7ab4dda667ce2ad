import numpy as np
import pandas as pd
import pytest

from ensemblex import Predictions
from ensemblex.tables import from_frame, read_table, to_frame, write_frame


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


def test_write_frame_leaves_no_temp_files(tmp_path):
    write_frame(pd.DataFrame({"a": [1.0]}), tmp_path / "x.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]
