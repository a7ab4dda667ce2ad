"""Where the time of ``BatchedMLP.infer`` goes, for the two cases that miss the issue's targets.

- K = 1,000 members of 2 x 32 at batch 64: ``infer``'s tiles (the model's own tile size and
  weights) re-run with a timer around each stage, each call after a torchensemble call as in
  ``deep_inference.py``.
- One row: ``infer`` with the first layer's side-by-side weights cached against building them
  on every call (what the training path does).
- K = 32 members of 3 x 512 at batch 1: one hidden layer's batched matrix-vector product in
  float32 and in bfloat16 against one read of its 32 MiB of weights (``torch.sum``).

Run: ``.venv/bin/python bench/deep_inference_stages.py``; writes
``bench/results/deep_inference_stages.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import torch

from deep_inference import D_IN, build, time_all

RESULTS = Path(__file__).parent / "results" / "deep_inference_stages.json"
CALLS = 21


class Clock:
    """Seconds per named stage, summed over one call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] += now - self.last
        self.last = now


def staged_call(model, x: torch.Tensor, bounds: list[int]) -> dict[str, float]:
    """``infer(x, reduce="softmax_mean")``'s tiles over the member ``bounds``, a lap per stage."""
    b = x.shape[0]
    weights, biases = model._inference_weights()
    clock = Clock()
    out = torch.zeros(weights[-1].shape[1], b)
    for m0, m1 in pairwise(bounds):
        w, bias = weights[0][m0:m1], biases[0][m0:m1]
        h = torch.addmm(bias.reshape(-1, 1), w.reshape(-1, w.shape[2]), x.T).view(m1 - m0, -1, b)
        clock.lap("first layer (one GEMM)")
        for i, (w, bias) in enumerate(zip(weights[1:], biases[1:]), start=2):
            h.relu_()
            clock.lap("ReLU")
            h = torch.baddbmm(bias[m0:m1], w[m0:m1], h)
            clock.lap(f"layer {i} (batched products)")
        p = torch.softmax(h, dim=1)
        clock.lap("softmax")
        out += p.sum(dim=0)
        clock.lap("sum over members")
    return dict(clock.seconds)


def small_members() -> dict:
    voting, model = build(1000, (32, 32))
    x = torch.randn(64, D_IN)
    k_tile, _, _ = model._tiles(model.k, len(x))
    bounds = [*range(0, model.k, k_tile), model.k]  # infer's member tiles
    stages: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for _ in range(CALLS + 2):
            voting(x)  # as in deep_inference.py: the loop runs between our calls
            for stage, seconds in staged_call(model, x, bounds).items():
                stages[stage].append(seconds)
    ms = {stage: statistics.median(ts[2:]) * 1e3 for stage, ts in stages.items()}
    sizes = [b - a for a, b in pairwise(bounds)]
    print(f"K=1000 2x32 B=64, member tiles {sizes}: total {sum(ms.values()):.2f} ms")
    for stage, value in ms.items():
        print(f"  {stage:32s} {value:7.3f} ms")
    return {"tile_members": sizes, "stages_ms": ms, "total_ms": sum(ms.values())}


def wide_members_one_row() -> dict:
    k, width = 32, 512
    weights = torch.randn(k, width, width)
    h = torch.randn(k, 1, width)
    weights_bf16, h_bf16 = weights.to(torch.bfloat16), h.to(torch.bfloat16)
    with torch.inference_mode():
        times = time_all(
            {
                "read_weights": lambda: weights.sum(),
                "bmm_float32": lambda: torch.bmm(h, weights),
                "bmm_bfloat16": lambda: torch.bmm(h_bf16, weights_bf16),
            },
            CALLS,
        )
    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    print(f"K=32 one 512x512 layer at B=1 ({weights.numel() * 4 / 2**20:.0f} MiB float32):")
    for name, value in ms.items():
        print(f"  {name:32s} {value:7.3f} ms")
    return {"ms": ms, "cpu": torch.backends.cpu.get_cpu_capability()}


def few_rows_cache() -> dict:
    """One row: ``infer`` (first layer side by side, cached) against the same products with
    the side-by-side weights built on every call (the training path), order-balanced."""
    result = {}
    for k, hidden in [(32, (512, 512, 512)), (1000, (32, 32))]:
        voting, model = build(k, hidden)
        x = torch.randn(1, D_IN)
        candidates = {
            "cached": lambda m=model, x=x: m.infer(x, reduce="softmax_mean"),
            "built per call": lambda m=model, x=x: torch.softmax(m._layers_forward(x), -1).mean(0),
        }
        times: dict[str, list[float]] = defaultdict(list)
        with torch.inference_mode():
            for fn in candidates.values():
                fn()
            for i in range(2 * CALLS):
                for name in list(candidates)[:: 1 if i % 2 else -1]:
                    voting(x)  # each candidate right after the loop, in alternating order
                    start = time.perf_counter()
                    candidates[name]()
                    times[name].append(time.perf_counter() - start)
        ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        result[f"k{k}"] = ms
        print(
            f"K={k} B=1, first layer side by side: "
            + ", ".join(f"{name} {value:.2f} ms" for name, value in ms.items())
        )
    return result


def main() -> None:
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "k1000_2x32_batch64": small_members(),
        "k32_3x512_batch1_layer": wide_members_one_row(),
        "batch1_side_by_side_first_layer": few_rows_cache(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
