"""Files written whole or not at all, and their digests: the one writer every output uses."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed onto ``path`` (mode 0644) if the
    block succeeds, removed if it fails, so ``path`` is never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# A model that decompresses beyond this is refused rather than read into memory (a damaged or
# hostile .gz whose digest was rewritten can claim any size).
MAX_DECOMPRESSED_BYTES = 1 << 32


def gzip_in_place(path: Path) -> Path:
    """Replace ``path`` by ``path.gz`` (deflate level 6, no timestamp, so the same file gives
    the same bytes and digest); the text models of LightGBM and XGBoost shrink 4-5x."""
    import gzip

    path = Path(path)
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                gz.write(chunk)
    path.unlink()
    return target


def read_gzip(path: Path, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """The decompressed bytes of a ``.gz`` file; a damaged, truncated or oversized one is a
    ValueError naming it."""
    import zlib

    path = Path(path)
    decoder = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
    out, size = [], 0
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                while chunk:
                    part = decoder.decompress(chunk, limit + 1 - size)
                    out.append(part)
                    size += len(part)
                    if size > limit:
                        raise ValueError(f"{path}: decompresses to more than {limit} bytes")
                    chunk = decoder.unconsumed_tail
                    if decoder.eof:
                        break
                if decoder.eof:
                    break
    except zlib.error as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from None
    if not decoder.eof:
        raise ValueError(f"{path}: not a readable gzip file (truncated)")
    return b"".join(out)


def write_text_atomic(text: str, path: Path) -> None:
    """Write text to a temp file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(data, path: Path) -> None:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(json.dumps(data, indent=2, default=json_default), path)


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
