"""A run directory that survives crashes: every finished (member, fold) is written atomically.

Layout under the root::

    run.json                     the run's fingerprint (data, members, folds, seed)
    folds/<member>/fold<k>/      one finished fold: preprocessor.skops, model.<ext>,
                                 oof.npy (predictions on the held-out rows, (n, columns, outputs)),
                                 done.json

A fold is written into a temporary folder and renamed into place, so a fold folder either
exists whole or not at all; rerunning the same command skips the folds already there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ensemblex.members.families import load_model, load_skops, predict_columns, save_model


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(text: str, path: Path) -> None:
    """Write text to a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(data, path: Path) -> None:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(json.dumps(data, indent=2, default=_plain), path)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class RunStore:
    """Finished folds of a cross-fitting run, on disk.

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
        marker = self.root / "run.json"
        if marker.exists():
            previous = json.loads(marker.read_text())
            if previous != json.loads(json.dumps(fingerprint, default=_plain)):
                raise ValueError(
                    f"{self.root}: holds folds of a different run (other data, members, folds "
                    "or seed); choose another output folder or remove this one"
                )
        else:
            write_json_atomic(fingerprint, marker)

    def fold_dir(self, member: str, fold: int) -> Path:
        return self.root / "folds" / member / f"fold{fold}"

    def is_done(self, member: str, fold: int) -> bool:
        return (self.fold_dir(member, fold) / "done.json").exists()

    def write_fold(
        self,
        member: str,
        fold: int,
        preprocessor,
        model,
        family: str,
        task: str,
        valid_X,
        seconds: dict,
    ) -> None:
        """Save a fitted fold and its held-out predictions, all or nothing.

        The held-out predictions come from the model as reloaded from disk, so that a
        resumed run and a saved ensemble see exactly the numbers a fresh run sees.
        """
        import skops.io as sio

        final = self.fold_dir(member, fold)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".fold{fold}.", suffix=".tmp"))
        try:
            sio.dump(preprocessor, tmp / "preprocessor.skops")
            model_path = save_model(model, family, tmp / "model")
            reloaded = load_model(model_path, family, task)
            oof = predict_columns(reloaded, valid_X, task)
            np.save(tmp / "oof.npy", oof, allow_pickle=False)
            files = ["preprocessor.skops", model_path.name, "oof.npy"]
            done = {
                "member": member,
                "fold": fold,
                "family": family,
                "model": model_path.name,
                "seconds": seconds,
                "sha256": {f: sha256_file(tmp / f) for f in files},
            }
            write_json_atomic(done, tmp / "done.json")
            if final.exists():  # a fold redone by a racing worker: keep the first
                return
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def read_fold(self, member: str, fold: int) -> tuple[np.ndarray, dict]:
        """Held-out predictions and metadata of a finished fold."""
        folder = self.fold_dir(member, fold)
        done = json.loads((folder / "done.json").read_text())
        return np.load(folder / "oof.npy", allow_pickle=False), done

    def load_fold(self, member: str, fold: int, task: str):
        """The fitted preprocessor and model of a finished fold."""
        folder = self.fold_dir(member, fold)
        done = json.loads((folder / "done.json").read_text())
        preprocessor = load_skops(folder / "preprocessor.skops")
        model = load_model(folder / done["model"], done["family"], task)
        return preprocessor, model
