"""One safetensors file per fitted deep estimator: tensors plus a JSON config in its header.

The file holds the network's ``state_dict`` (``model.*``), the fitted preprocessing arrays
(``arrays.*``) and, in the header's metadata, a JSON config (format, estimator class, its
constructor parameters, fitted scalars such as the classes). Loading reads tensors and JSON
only: no pickle, no code executed from the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ensemblex.files import atomic_path

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
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"config": json.dumps(config, default=_plain)})
        return path

    @classmethod
    def load(cls, path):
        """Load a file written by :meth:`save` (tensors and JSON only: nothing unpickled).

        The network the config describes is first built on PyTorch's ``meta`` device (no
        memory) and its parameter shapes checked against the tensors listed in the file's
        header, so a small file cannot make ``load`` allocate a large network.
        """
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                config = json.loads((fh.metadata() or {}).get("config", "{}"))
                shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
                if not isinstance(config, dict) or config.get("format") != FORMAT:
                    raise ValueError("no ensemblex config in its header")
                if config.get("estimator") != cls.__name__:
                    raise ValueError(f"it holds a {config.get('estimator')!r}")
                params = {
                    k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()
                }
                arrays = {
                    k[7:]: fh.get_tensor(k).numpy() for k in shapes if k.startswith("arrays.")
                }
                _check_shapes(cls, params, config["fitted"], arrays, shapes)
                state = {k[6:]: fh.get_tensor(k) for k in shapes if k.startswith("model.")}
                self = cls(**params)
                self._restore(config["fitted"], arrays)
                self.model_.load_state_dict(state)
        except Exception as exc:  # SafetensorError, JSON, and a config that does not build
            raise ValueError(f"{path}: not a saved {cls.__name__} ({exc})") from None
        self.model_.eval()
        return self


def _check_shapes(cls, params: dict, fitted: dict, arrays: dict, shapes: dict) -> None:
    """Build the estimator's network on the meta device and compare its parameter shapes
    with the file's (``model.*`` entries); raise ValueError on any difference."""
    probe = cls(**params)
    with torch.device("meta"):
        probe._restore(fitted, arrays)
    expected = {f"model.{k}": tuple(v.shape) for k, v in probe.model_.state_dict().items()}
    found = {k: v for k, v in shapes.items() if k.startswith("model.")}
    if expected != found:
        names = expected.keys() | found.keys()
        differ = sorted(k for k in names if expected.get(k) != found.get(k))
        raise ValueError(
            f"the config describes a network whose tensors differ from the file's: {differ[:3]}"
        )
