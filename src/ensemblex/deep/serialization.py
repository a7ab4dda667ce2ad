"""One safetensors file per fitted deep estimator: tensors plus a JSON config in its header.

The file holds the network's ``state_dict`` (``model.*``), the fitted preprocessing arrays
(``arrays.*``) and, in the header's metadata, a JSON config (format, estimator class, its
constructor parameters, fitted scalars such as the classes). Loading reads tensors and JSON
only: no pickle, no code executed from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "ensemblex-torch-members"
FORMAT_VERSION = 1


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class TorchMembersMixin:
    """``save``/``load`` for deep estimators that define ``_fitted_state`` and ``_restore``.

    ``_fitted_state() -> (fitted: dict, arrays: dict[str, np.ndarray])`` returns what
    ``fit`` learned besides the network; ``_restore(fitted, arrays)`` sets it back and builds
    ``self.model_`` (its weights are loaded afterwards).
    """

    def save(self, path) -> Path:
        """Write ``path`` (a ``.safetensors`` file) atomically; returns the path."""
        from safetensors.torch import save_file

        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        path = Path(path)
        fitted, arrays = self._fitted_state()
        tensors = {
            f"model.{k}": v.detach().contiguous() for k, v in self.model_.state_dict().items()
        }
        tensors.update(
            {f"arrays.{k}": torch.as_tensor(np.ascontiguousarray(v)) for k, v in arrays.items()}
        )
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": {k: _plain(v) for k, v in self.get_params().items()},
            "fitted": fitted,
            "versions": {"torch": torch.__version__},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"config": json.dumps(config, default=_plain)})
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path):
        """Load a file written by :meth:`save` (tensors and JSON only: nothing unpickled)."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                config = json.loads((fh.metadata() or {}).get("config", "{}"))
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a saved {cls.__name__} ({exc})") from None
        if config.get("format") != FORMAT or config.get("estimator") != cls.__name__:
            raise ValueError(f"{path}: not a saved {cls.__name__}")
        try:
            params = {
                k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()
            }
            self = cls(**params)
            arrays = {k[7:]: v.numpy() for k, v in tensors.items() if k.startswith("arrays.")}
            self._restore(config["fitted"], arrays)
            state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            self.model_.load_state_dict(state)
        except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise ValueError(f"{path}: a {cls.__name__} that does not load ({exc})") from None
        self.model_.eval()
        return self
