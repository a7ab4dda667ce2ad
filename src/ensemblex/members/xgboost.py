"""XGBoost members, saved as XGBoost's JSON model (gzip-compressed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ensemblex.files import gzip_in_place, read_gzip
from ensemblex.members.base import TabularMember


class XGBoostMember(TabularMember):
    """An ``XGBRegressor``/``XGBClassifier`` (categorical columns as ordinal codes)."""

    family = "xgboost"
    suffix = ".json"
    library = "xgboost"
    default_encoding = "native"
    thread_param = "n_jobs"

    def save_model(self, path):
        # XGBoost's JSON, compressed (about 5x smaller); the scikit-learn wrapper's
        # save_model also records its own settings in the file, which save_raw would not
        self.model_.save_model(str(path))
        gzip_in_place(path)

    def model_settings(self):
        return {"compression": "gzip"}

    @classmethod
    def load_model(cls, path, task, settings):
        path = Path(path)
        if settings.get("compression") != "gzip":  # models saved before 0.1: plain JSON
            return _load_file(path, path, task)
        # Through a file, not a buffer: XGBoost's buffer loader aborts the process on damaged
        # JSON where its file loader raises.
        data = read_gzip(path.with_name(path.name + ".gz"))
        with tempfile.TemporaryDirectory(prefix="ensemblex-xgb-") as tmp:
            plain = Path(tmp) / "model.json"
            plain.write_bytes(data)
            return _load_file(plain, path.with_name(path.name + ".gz"), task)


def _load_file(file: Path, named: Path, task: str):
    """An XGBoost scikit-learn model read from ``file``; errors name ``named``."""
    import xgboost as xgb

    model = xgb.XGBRegressor() if task == "regression" else xgb.XGBClassifier()
    try:
        model.load_model(str(file))
    except (xgb.core.XGBoostError, ValueError) as exc:  # ValueError: it decodes bad bytes
        # XGBoost appends a C++ stack trace: keep the first line only
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{named}: not a readable XGBoost model ({first})") from None
    return model
