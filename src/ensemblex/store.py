"""A run directory that survives crashes: every finished (member, fold) is written atomically.

Layout under the root::

    run.json                     the run's fingerprint (data, members, folds, seed)
    folds/<member>/fold<k>/      one finished fold: the fitted member as it saves itself
                                 (member.json and its files), oof.npy (predictions on the
                                 held-out rows, (n, columns, outputs)), done.json (seconds and
                                 the SHA-256 of every file)

A fold is written into a temporary folder and renamed into place, so a fold folder either
exists whole or not at all; rerunning the same command skips the folds already there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ensemblex.files import json_default, sha256_file, write_json_atomic

log = logging.getLogger(__name__)


class DamagedFold(ValueError):
    """A finished fold whose files no longer match the digests recorded when it was written."""


class RunStore:
    """Finished folds of a cross-fitting run, on disk.

    Every file of a fold is listed in its ``done.json`` with its SHA-256 and checked before
    it is used: a damaged or missing file makes the fold unfinished (it is removed, with a
    warning, and refitted), never read.

    Parameters
    ----------
    root : path
        The run directory; created if missing.
    fingerprint : dict
        What makes two runs the same (data hash, members, folds, seed). A directory holding
        another run's folds is refused rather than silently mixed.
    """

    def __init__(self, root, fingerprint: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "folds").mkdir(exist_ok=True)
        for leftover in (self.root / "folds").glob("*/.fold*.tmp"):  # a killed writer's
            shutil.rmtree(leftover, ignore_errors=True)
        marker = self.root / "run.json"
        expected = json.loads(json.dumps(fingerprint, default=json_default))
        if marker.exists():
            try:
                previous = json.loads(marker.read_text())
            except (OSError, ValueError):
                previous = None
            if previous is None:
                log.warning("%s: unreadable, written anew", marker)
                write_json_atomic(fingerprint, marker)
            elif previous != expected:
                raise ValueError(
                    f"{self.root}: holds folds of a different run (other data, members, folds "
                    "or seed); choose another output folder or remove this one"
                )
        else:
            write_json_atomic(fingerprint, marker)

    def fold_dir(self, member: str, fold: int | str) -> Path:
        """``folds/<member>/fold<k>``, or ``folds/<member>/<name>`` for a named fold (the
        refit on all rows)."""
        name = f"fold{fold}" if isinstance(fold, int) else str(fold)
        return self.root / "folds" / member / name

    def is_done(self, member: str, fold: int | str) -> bool:
        """Whether the fold is finished and intact; a damaged fold is removed with a warning
        so that it is fitted again."""
        folder = self.fold_dir(member, fold)
        if not folder.exists():
            return False
        try:
            self._verified(member, fold)
            return True
        except DamagedFold as exc:
            log.warning("%s; it will be fitted again", exc)
            shutil.rmtree(folder, ignore_errors=True)
            return False

    def write_fold(self, member: str, fold: int | str, write: Callable[[Path], dict]) -> None:
        """Write a fold all or nothing: ``write(folder)`` fills a temporary folder and returns
        the fold's metadata; every file then gets its digest in ``done.json`` and the folder
        is renamed into place."""
        final = self.fold_dir(member, fold)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".fold{fold}.", suffix=".tmp"))
        try:
            meta = write(tmp)
            files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            done = {
                "member": member,
                "fold": fold,
                **meta,
                "sha256": {f: sha256_file(tmp / f) for f in files},
            }
            write_json_atomic(done, tmp / "done.json")
            tmp.chmod(0o755)  # mkdtemp makes 0700 folders; files are 0644
            if final.exists():  # a fold redone by a racing worker: keep the first
                return
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def read_fold(
        self, member: str, fold: int | str, only: tuple[str, ...] = ("oof.npy",)
    ) -> tuple[np.ndarray | None, dict]:
        """Held-out predictions and metadata of a finished fold (the files in ``only``
        verified); no predictions (None) when ``only`` leaves out ``oof.npy``."""
        folder = self.fold_dir(member, fold)
        done = self._verified(member, fold, only=only)
        if "oof.npy" not in only:
            return None, done
        return np.load(folder / "oof.npy", allow_pickle=False), done

    def load_fold(self, member: str, fold: int | str):
        """The fitted member of a finished fold, its files verified before they are parsed."""
        from ensemblex.members.base import load_member

        self._verified(member, fold)
        return load_member(self.fold_dir(member, fold))

    def _verified(self, member: str, fold: int | str, only: tuple[str, ...] | None = None) -> dict:
        folder = self.fold_dir(member, fold)
        try:
            done = json.loads((folder / "done.json").read_text())
            digests = dict(done["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DamagedFold(f"{folder}: done.json is missing or unreadable") from None
        for name in sorted(digests) if only is None else only:
            file = folder / name
            if name not in digests or not file.is_file() or file.is_symlink():
                raise DamagedFold(f"{folder}: {name} is missing or not listed in done.json")
            if sha256_file(file) != digests[name]:
                raise DamagedFold(f"{folder}: {name} was changed since it was written")
        return done
