"""TfidfLogistic: a text member written against the protocol alone."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline

from ensemblex.members import FoldContext, load_member, member_from_spec
from ensemblex.members.text import TfidfLogistic, TfidfRidge, text_columns, text_members
from ensemblex.preprocessing import infer_schema

TOPICS = {
    "spam": "win free prize cash claim offer urgent winner call now bonus".split(),
    "ham": "see you lunch tomorrow meeting thanks friend home later dinner".split(),
    "work": "report deadline project budget review slides client invoice team".split(),
}
FILLER = "the a to and of it is for on".split()


def sentences(n, classes=("spam", "ham"), seed=0):
    """``n`` generated messages: words of their class's topic, filler, and a few from another
    topic (so that the classes overlap a little)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(list(classes), size=n)
    texts = []
    for label in labels:
        other = TOPICS[rng.choice([c for c in classes if c != label])]
        words = [*rng.choice(TOPICS[label], 4), *rng.choice(FILLER, 3), rng.choice(other)]
        texts.append(" ".join(rng.permutation(words)))
    return pd.DataFrame(
        {
            "id": [f"m{i:03d}" for i in range(n)],
            "tag": rng.choice(["a", "b"], size=n),
            "message": texts,
        }
    ), labels


def _fit(member, X, labels):
    classes, codes = np.unique(labels, return_inverse=True)
    task = "binary" if len(classes) == 2 else "multiclass"
    return member.fit(X, codes, FoldContext(task, infer_schema(X), len(classes))), codes


@pytest.mark.parametrize(
    ("spec", "classes", "vectorizer"),
    [
        ("words=tfidf_logistic", ("spam", "ham"), {"analyzer": "word", "ngram_range": (1, 2)}),
        (
            "chars=tfidf_logistic:analyzer=char_wb,C=3,ngram_max=4",
            ("spam", "ham", "work"),
            {"analyzer": "char_wb", "ngram_range": (2, 4)},
        ),
    ],
)
def test_predicts_like_the_scikit_learn_pipeline_and_round_trips(
    spec, classes, vectorizer, tmp_path
):
    X, labels = sentences(72, classes)
    template = member_from_spec(spec)
    fitted, codes = _fit(template, X[:48], labels[:48])
    assert fitted.column == "message"  # the longest text column, not the id or the tag
    assert template.column is None and template.pipeline_ is None  # the template is unchanged
    pred = fitted.predict(X[48:])
    assert pred.shape == (24, 1, len(classes))

    reference = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, min_df=2, **vectorizer),
        LogisticRegression(C=template.C, max_iter=2000),
    ).fit(X["message"][:48], codes)
    expected = reference.predict_proba(X["message"][48:])
    np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-12)
    test_codes = np.unique(labels, return_inverse=True)[1][48:]
    assert (pred[:, 0].argmax(axis=1) == test_codes).mean() > 0.8

    folder = fitted.save(tmp_path / template.name)
    assert {p.name for p in folder.iterdir()} == {"member.json", "pipeline.skops"}
    meta = json.loads((folder / "member.json").read_text())
    assert meta["family"] == "tfidf_logistic" and meta["columns"] == [template.name]
    assert meta["settings"] == {
        "column": "message",
        "analyzer": template.analyzer,
        "ngram_max": template.ngram_max,
        "C": template.C,
    }
    loaded = load_member(folder)
    assert isinstance(loaded, TfidfLogistic) and loaded.task == fitted.task
    np.testing.assert_allclose(loaded.predict(X[48:]), pred, rtol=0, atol=1e-12)


def test_spec_parameters():
    chars = member_from_spec("chars=tfidf_logistic:analyzer=char_wb,C=3")
    assert isinstance(chars, TfidfLogistic)
    assert (chars.name, chars.analyzer, chars.C, chars.ngram_max) == ("chars", "char_wb", 3, 2)
    assert member_from_spec("t=tfidf_logistic:column=body").column == "body"
    assert chars.fingerprint() != member_from_spec("chars=tfidf_logistic").fingerprint()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tfidf_logistic", "must look like NAME=FAMILY"),
        ("=tfidf_logistic", "must look like NAME=FAMILY"),
        ("x=", "must look like NAME=FAMILY"),
        ("x=tfidf_logistic:C", "option 'C' must be key=value"),
        ("x=tfidf_logistic:=3", "option '=3' must be key=value"),
        ("x=tfidf_logistic:colour=red", "unexpected keyword argument 'colour'"),
        ("x=bag_of_words", "unknown member family 'bag_of_words'"),
        ("a/b=tfidf_logistic", "member name must be"),
    ],
)
def test_bad_specs_are_value_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        member_from_spec(spec)


def test_bad_inputs():
    X, labels = sentences(30)
    with pytest.raises(ValueError, match="TfidfLogistic is for classification"):
        TfidfLogistic("t").fit(X, np.arange(30.0), FoldContext("regression", infer_schema(X)))
    with pytest.raises(ValueError, match="the table has no text column"):
        _fit(TfidfLogistic("t"), pd.DataFrame({"n": np.arange(30.0)}), labels)
    with pytest.raises(ValueError, match="text column 'body' is missing"):
        _fit(TfidfLogistic("t", column="body"), X, labels)
    fitted, _ = _fit(TfidfLogistic("t"), X, labels)
    with pytest.raises(ValueError, match="text column 'message' is missing"):
        fitted.predict(X.drop(columns="message"))
    # missing texts are read as empty strings
    gaps = X.assign(message=X["message"].where(np.arange(30) % 5 > 0))
    assert np.isfinite(fitted.predict(gaps)).all()


def test_a_damaged_pipeline_is_a_value_error_naming_it(tmp_path, damage_guard):
    X, labels = sentences(30)
    fitted, _ = _fit(TfidfLogistic("t"), X, labels)
    folder = fitted.save(tmp_path / "t")
    data = (folder / "pipeline.skops").read_bytes()
    (folder / "pipeline.skops").write_bytes(data[: len(data) // 2])
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(folder)
    expected = (
        "pipeline.skops: not a readable skops file"
        if guard == "parser"
        else r"pipeline.skops: damaged \(its SHA-256 differs"
    )
    with pytest.raises(ValueError, match=expected):
        load_member(folder)


# ---------------------------------------------------------------- regression, detection, zoo
def test_tfidf_ridge_predicts_like_the_scikit_learn_pipeline_and_round_trips(tmp_path):
    X, labels = sentences(60)
    y = (labels == "spam") * 3.0 + np.arange(60) / 60
    template = TfidfRidge("ridge", analyzer="char_wb", ngram_max=3, C=2.0)
    fitted = template.fit(X[:40], y[:40], FoldContext("regression", infer_schema(X)))
    pred = fitted.predict(X[40:])
    reference = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, min_df=2, analyzer="char_wb", ngram_range=(2, 3)),
        Ridge(alpha=0.5),
    ).fit(X["message"][:40], y[:40])
    np.testing.assert_allclose(pred[:, 0, 0], reference.predict(X["message"][40:]), atol=1e-12)
    assert np.corrcoef(pred[:, 0, 0], y[40:])[0, 1] > 0.8
    loaded = load_member(fitted.save(tmp_path / "ridge"))
    assert isinstance(loaded, TfidfRidge) and loaded.task == "regression"
    np.testing.assert_array_equal(loaded.predict(X[40:]), pred)
    with pytest.raises(ValueError, match="TfidfRidge is for regression"):
        _fit(TfidfRidge("r"), X, labels)
    with pytest.raises(ValueError, match="analyzer must be one of"):
        _fit(TfidfLogistic("t", analyzer="char"), X, labels)


def test_text_columns():
    X, _ = sentences(40)
    rng = np.random.default_rng(0)
    frame = X.assign(
        sex=rng.choice(["Male", "Female"], 40),
        name=[f"Ann Smith{i}" for i in range(40)],  # two words: a name, not free text
        degree=rng.choice(["Bachelor of Arts degree", "Master of Science degree"], 40),
        amount=rng.normal(size=40),
        short=[f"{t} and more words here" for t in X["message"]],
        empty=None,
    )
    assert text_columns(frame) == ["short", "message"]  # longest texts first
    mostly = frame.assign(message=frame["message"].where(np.arange(40) % 4 > 0))
    assert "message" in text_columns(mostly)  # missing cells do not count
    assert text_columns(frame[["sex", "name", "amount"]]) == []
    with pytest.raises(TypeError, match="frame must be a pandas DataFrame"):
        text_columns(frame.to_numpy())
    # a member without a column reads the free-text column, not the longest strings
    long_ids = X.assign(id=[f"customer-reference-{i:040d}" for i in range(40)])
    fitted, _ = _fit(TfidfLogistic("t"), long_ids, sentences(40)[1])
    assert fitted.column == "message"


def test_text_members():
    binary = text_members("binary", random_state=3)
    assert [(m.name, m.family) for m in binary] == [
        ("tfidf_words", "tfidf_logistic"),
        ("tfidf_chars", "tfidf_logistic"),
        ("minilm_linear", "sentence_embedding"),
        ("minilm_mlp", "sentence_embedding"),
    ]
    assert binary[3].random_state == 3 and binary[1].analyzer == "char_wb"
    regression = text_members("regression", columns=["title", "body"])
    assert [m.name for m in regression][:5] == [
        "tfidf_words@title",
        "tfidf_chars@title",
        "minilm_linear@title",
        "minilm_mlp@title",
        "tfidf_words@body",
    ]
    assert isinstance(regression[0], TfidfRidge) and regression[4].column == "body"
    with pytest.raises(ValueError, match="task must be"):
        text_members("ranking")
    with pytest.raises(ValueError, match="columns must be a list"):
        text_members("binary", columns="body")
