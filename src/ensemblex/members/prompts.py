"""Zero-shot prompt members: classes described in words, texts matched to the descriptions.

Each class label gets one or several descriptions ("a spam message offering a prize"); a
*prompt set* maps every class to its descriptions. The sentence encoder of
:mod:`ensemblex.members.embeddings` embeds the descriptions and the texts; a class's
prototype is the normalised mean of its descriptions' unit embeddings (prompt ensembling as
in CLIP), and a text's class probabilities are ``softmax(cos(text, prototype) / T)``. Every
prompt set is one column of the predictions array, so several wordings of the same task are
members that the label-free combiners of :mod:`ensemblex.combiners.labelfree`
(``DawidSkene``, ``ConsensusWeighting``, ...) weigh without a single label.

Fitting is label-free: ``fit`` reads the training rows only to pick the text column, and
never reads ``y`` (it may be None). The class order is the one of ``classes`` (the labels in
the order of the class codes), by default the sorted labels of the prompt sets, which is the
order :class:`ensemblex.EnsembleClassifier` gives the codes (``np.unique``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemblex.members.base import FoldContext, Member
from ensemblex.members.embeddings import check_encoder, embed, encoder_identity


def _prompt_sets(prompts, name: str) -> list[dict]:
    """``prompts`` as a list of ``{label: [descriptions]}`` with the same labels each."""
    sets = [prompts] if isinstance(prompts, dict) else prompts
    if not isinstance(sets, list | tuple) or not sets:
        raise ValueError(
            f"member {name!r}: prompts must be a dict {{label: description(s)}} or a non-empty "
            f"list of them, however: prompts={prompts!r}"
        )
    out = []
    for k, one in enumerate(sets):
        if not isinstance(one, dict) or len(one) < 2:
            raise ValueError(
                f"member {name!r}: prompt set {k} must map at least two class labels to "
                f"descriptions, however: {one!r}"
            )
        clean = {}
        for label, texts in one.items():
            texts = [texts] if isinstance(texts, str) else list(texts)
            if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(
                    f"member {name!r}: prompt set {k}, class {label!r} needs one or more "
                    f"non-empty descriptions, however: {one[label]!r}"
                )
            clean[label] = texts
        if out and set(clean) != set(out[0]):
            raise ValueError(
                f"member {name!r}: prompt set {k} describes classes {sorted(map(str, clean))}, "
                f"however prompt set 0 describes {sorted(map(str, out[0]))}"
            )
        out.append(clean)
    return out


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, np.finfo(np.float32).tiny)


def softmax_cosine(embeddings: np.ndarray, prototypes: np.ndarray, temperature: float):
    """Class probabilities from cosine similarities.

    Parameters
    ----------
    embeddings : ndarray of shape (n, d)
    prototypes : ndarray of shape (n_sets, n_classes, d)
    temperature : float

    Returns
    -------
    ndarray of shape (n, n_sets, n_classes)
        ``softmax(cos(embeddings[i], prototypes[s, c]) / temperature)`` over ``c``.
    """
    from scipy.special import softmax

    cosine = np.einsum("nd,scd->nsc", _unit(embeddings), _unit(prototypes))
    return softmax(cosine.astype(np.float64) / temperature, axis=-1)


class ZeroShotPrompts(Member):
    """Zero-shot classification by prompt sets: one column per prompt set, no labels used.

    Parameters
    ----------
    name : str
    prompts : dict or list of dict
        A prompt set ``{label: description or [descriptions]}``, or a list of prompt sets
        over the same labels; each set is one column (``name.0``, ``name.1``, ...).
    classes : list, optional
        The labels in class-code order (an :class:`ensemblex.EnsembleClassifier` codes its
        labels in sorted order); default: the sorted labels of the prompt sets.
    column : str, optional
        Text column; default as for :class:`ensemblex.members.text.TfidfLogistic`.
    temperature : float, default 0.05
        Softmax temperature on cosine similarities (sentence-embedding cosines between a
        text and class descriptions differ by tenths, so 1 would give near-uniform output).
    encoder, cache_dir
        As in :class:`ensemblex.members.embeddings.SentenceEmbedding`.

    Examples
    --------
    >>> member = ZeroShotPrompts("zs", [
    ...     {"spam": "an advert offering a prize", "ham": "a message between friends"},
    ...     {"spam": ["win cash now", "claim your reward"], "ham": "see you later"},
    ... ])
    >>> member.column_names(), member.classes_
    (['zs.0', 'zs.1'], ['ham', 'spam'])
    """

    family = "zero_shot_prompts"

    def __init__(
        self,
        name="zero_shot",
        prompts=None,
        classes=None,
        column=None,
        temperature=0.05,
        encoder=None,
        cache_dir=None,
    ):
        super().__init__(name)
        self.prompts, self.classes, self.column = prompts, classes, column
        self.temperature, self.encoder, self.cache_dir = temperature, encoder, cache_dir
        sets = _prompt_sets(prompts, name)
        self.classes_ = list(classes) if classes is not None else sorted(sets[0])
        if len(set(self.classes_)) != len(self.classes_) or set(self.classes_) != set(sets[0]):
            raise ValueError(
                f"member {name!r}: classes must list each described label once, however: "
                f"classes={classes!r}, described: {sorted(map(str, sets[0]))}"
            )
        if not isinstance(temperature, int | float) or not temperature > 0:
            raise ValueError(
                f"member {name!r}: temperature must be a positive number, however: "
                f"temperature={temperature!r}"
            )
        self.prompt_sets_ = sets
        self.prototypes_ = None  # (n_sets, n_classes, d)
        self.encoder_ = None

    def n_columns(self) -> int:
        return len(self.prompt_sets_)

    def fit(self, X: pd.DataFrame, y=None, context: FoldContext | None = None) -> ZeroShotPrompts:
        """Embed the descriptions; ``X`` only names the text column, ``y`` is not read."""
        from ensemblex.members.text import pick_text_column

        task = context.task if context is not None else "multiclass"
        if task == "regression":
            raise ValueError(f"member {self.name!r}: ZeroShotPrompts is for classification")
        n_classes = len(self.classes_)
        if context is not None and context.n_classes not in (0, n_classes):
            raise ValueError(
                f"member {self.name!r}: the prompts describe {n_classes} classes "
                f"{self.classes_}, however the task has n_classes={context.n_classes}"
            )
        fitted = ZeroShotPrompts(
            self.name, self.prompts, self.classes, self.column or pick_text_column(X, self.name),
            self.temperature, self.encoder, self.cache_dir,
        )  # fmt: skip
        fitted.task = "binary" if n_classes == 2 else "multiclass"
        identity = encoder_identity(self.encoder)
        descriptions = [d for s in self.prompt_sets_ for c in self.classes_ for d in s[c]]
        rows = _unit(embed(descriptions, identity, self.cache_dir))
        prototypes, start = [], 0
        for s in self.prompt_sets_:
            for c in self.classes_:
                prototypes.append(rows[start : start + len(s[c])].mean(axis=0))
                start += len(s[c])
        d = rows.shape[1]
        fitted.prototypes_ = _unit(np.stack(prototypes)).reshape(len(self.prompt_sets_), -1, d)
        fitted.encoder_ = {"name": identity.name, "digest": identity.digest}
        return fitted

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities ``(n_samples, n_prompt_sets, n_classes)``."""
        from ensemblex.members.text import _texts

        if self.prototypes_ is None:
            raise ValueError(f"member {self.name!r} is not fitted")
        identity = encoder_identity(self.encoder)
        check_encoder(identity, self.encoder_, self.name)
        rows = embed(_texts(X, self.column, self.name), identity, self.cache_dir)
        return softmax_cosine(rows, self.prototypes_, self.temperature)

    def save_files(self, folder) -> dict:
        from safetensors.numpy import save_file

        save_file({"prototypes": self.prototypes_}, str(folder / "prototypes.safetensors"))
        return {
            # pairs, not a JSON object, so that labels keep their type (1 stays 1, not "1")
            "prompts": [[[c, s[c]] for c in self.classes_] for s in self.prompt_sets_],
            "classes": self.classes_,
            "column": self.column,
            "temperature": self.temperature,
            "encoder": None if self.encoder is None else str(self.encoder),
            "cache_dir": self.cache_dir if self.cache_dir in (None, False) else str(self.cache_dir),
            "encoder_identity": self.encoder_,
        }

    @classmethod
    def load_files(cls, folder, name, task, settings) -> ZeroShotPrompts:
        from safetensors.numpy import load_file

        settings = dict(settings)
        saved = settings.pop("encoder_identity")
        settings["prompts"] = [{c: texts for c, texts in pairs} for pairs in settings["prompts"]]
        member = cls(name, **settings)
        check_encoder(encoder_identity(member.encoder), saved, name)
        member.encoder_ = saved
        try:
            prototypes = load_file(str(folder / "prototypes.safetensors"))["prototypes"]
        except Exception as exc:  # safetensors' own errors, a missing tensor
            raise ValueError(f"{folder}: not readable prototypes ({exc})") from None
        if prototypes.shape[:2] != (member.n_columns(), len(member.classes_)):
            raise ValueError(
                f"{folder}: prototypes of shape {prototypes.shape}, however the prompts give "
                f"{member.n_columns()} sets of {len(member.classes_)} classes"
            )
        member.prototypes_ = prototypes
        return member

    def __repr__(self) -> str:
        return (
            f"ZeroShotPrompts({self.name!r}, prompts={self.prompts!r}, classes={self.classes!r}, "
            f"column={self.column!r}, temperature={self.temperature}, encoder={self.encoder!r})"
        )
