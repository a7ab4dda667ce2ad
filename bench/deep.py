"""Every deep-ensemble figure of the README, one part after another.

- ``inference``: K members as one computation against torchensemble's ``VotingClassifier``
  (latency, throughput, fraction of the one-GEMM limit): ``bench/deep_inference.py``;
- ``stages``: where the time goes in the cases that miss the targets (stage timers, the
  weights' read, bfloat16): ``bench/deep_inference_stages.py``;
- ``tabular``: TabM (and greedy head pruning), 5 MLPs and one MLP on California housing,
  adult and churn: ``bench/deep_tabular.py``;
- ``images``: 5 small CNNs vs one and 5 MLPs vs one on MNIST: ``bench/deep_images.py``;
- ``weights``: soups, WiSE-FT, snapshots/EMA and distillation on MNIST and adult:
  ``bench/deep_weights.py``.

Run: ``.venv/bin/python bench/deep.py [inference] [stages] [tabular] [images] [weights]``
(default: all; the tabular part takes most of an hour on 2 cores). Each part writes
``bench/results/deep_<part>.json``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = {
    "inference": "deep_inference.py",
    "stages": "deep_inference_stages.py",
    "tabular": "deep_tabular.py",
    "images": "deep_images.py",
    "weights": "deep_weights.py",
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(PARTS)
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; choose from {list(PARTS)}")
    for part in chosen:
        print(f"\n=== {part} ===", flush=True)
        sys.argv = [str(HERE / PARTS[part])]
        runpy.run_path(str(HERE / PARTS[part]), run_name="__main__")
