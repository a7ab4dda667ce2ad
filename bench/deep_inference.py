"""Inference of a deep ensemble: ensemblex's BatchedMLP against torchensemble's VotingClassifier.

Both hold the same members (same weights, checked before timing); both return the members'
mean softmax probabilities. Configurations: K = 32 members of 3 x 512 hidden, and K = 1,000
members of 2 x 32 hidden ("huge ensemble"), 64 features, 10 classes, batch 1, 64 and 4,096,
on CPU with torch's default number of threads.

The limit is one ``torch.mm`` with the FLOPs of the whole ensemble's forward pass for the batch
(FLOPs = 2 * B * K * sum(d_in * d_out) over layers, checked against ``FlopCounterMode``), of
cubic shape n x n x n so that it is compute-bound, its time scaled to the exact FLOP count;
fraction = limit time / time. "reading the weights" is one ``torch.sum`` over all the members'
parameters (one flat float32 copy): a floor for any call that must read every weight once.
"naive" is BatchedMLP's layer-by-layer (training) path under
no_grad, the batched matmul without tiling.

Timing: rounds in which every candidate, the limit's ``torch.mm`` and the weights' read run
once each, so one round's calls share the machine's noise; three passes over all cases, each
with 21 rounds per case (2 at B = 4,096); times are medians over all rounds, and the speedup is
the median of the rounds' own ratios, with its quartiles (on this shared 2-core machine
torchensemble's Python loop varied by up to 1.5x between runs minutes apart).

Run: ``.venv/bin/python bench/deep_inference.py``; writes ``bench/results/deep_inference.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchensemble import VotingClassifier

from ensemblex.deep.batched import BatchedMLP

D_IN, N_CLASSES = 64, 10
CONFIGS = [(32, (512, 512, 512)), (1000, (32, 32))]
BATCHES = [1, 64, 4096]
# rounds per pass (fewer at the largest batch); passes over every case, minutes apart, so that
# the figures pool the machine's drift as well as its noise within a pass
ROUNDS, ROUNDS_LARGE, PASSES = 21, 2, 3
RESULTS = Path(__file__).parent / "results" / "deep_inference.json"
DEFAULT_THREADS = torch.get_num_threads()


class MLP(nn.Module):
    """One member, as torchensemble wants it: an ``nn.Module`` class built from keyword args."""

    def __init__(self, hidden: tuple[int, ...] = (32, 32)):
        super().__init__()
        sizes = [D_IN, *hidden, N_CLASSES]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build(k: int, hidden: tuple[int, ...]) -> tuple[VotingClassifier, BatchedMLP]:
    """A VotingClassifier with K fresh members and a BatchedMLP holding the same weights."""
    torch.manual_seed(0)
    voting = VotingClassifier(
        estimator=MLP, n_estimators=k, estimator_args={"hidden": hidden}, cuda=False
    )
    # torchensemble builds estimators_ in fit; the same members, untrained, serve for timing
    voting.estimators_ = nn.ModuleList(MLP(hidden) for _ in range(k))
    voting.eval()
    batched = BatchedMLP(k, D_IN, N_CLASSES, hidden).eval()
    with torch.no_grad():
        for j, member in enumerate(voting.estimators_):
            linears = [m for m in member.net if isinstance(m, nn.Linear)]
            for layer, target in zip(linears, batched.layers, strict=True):
                target.weight[j].copy_(layer.weight.T)
                target.bias[j, 0].copy_(layer.bias)
    return voting, batched


def naive(model: BatchedMLP, x: torch.Tensor) -> torch.Tensor:
    """The untiled batched matmul (BatchedMLP's training path), mean softmax ``(B, classes)``."""
    for i, layer in enumerate(model.layers):
        x = layer(x)
        if i < len(model.layers) - 1:
            x = torch.relu(x)
    return F.softmax(x, dim=-1).mean(dim=0)


def flops(k: int, hidden: tuple[int, ...], b: int) -> int:
    sizes = [D_IN, *hidden, N_CLASSES]
    return 2 * b * k * sum(a * c for a, c in pairwise(sizes))


def time_all(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate, ``repeats`` rounds; the candidates interleave within
    a round so that round ``i`` of each shares the machine's noise (paired ratios)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return q1, median, q3


def cubic_mm(n_flops: int) -> tuple[Callable[[], torch.Tensor], float, int]:
    """One compute-bound cubic ``torch.mm`` and the factor that scales its time to ``n_flops``."""
    n = max(64, round((n_flops / 2) ** (1 / 3)))
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), n_flops / (2 * n**3), n


def check(k: int, hidden: tuple[int, ...], voting: VotingClassifier, batched: BatchedMLP) -> None:
    """Both paths of ensemblex agree with torchensemble; the analytic FLOPs with the counter."""
    with torch.inference_mode():
        x = torch.randn(64, D_IN)
        ref = voting(x)
        for name, got in [
            ("infer", batched.infer(x, reduce="softmax_mean")),
            ("naive", naive(batched, x)),
        ]:
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=name)
        with FlopCounterMode(display=False) as counter:
            voting(x)
        counted, analytic = counter.get_total_flops(), flops(k, hidden, 64)
        assert counted == analytic, (counted, analytic)
    print(
        f"K={k} members of {len(hidden)} x {hidden[0]} hidden: outputs agree (1e-5); "
        f"FLOPs at B=64 = 2*B*K*sum(d_in*d_out) = {analytic:,} (FlopCounterMode: {counted:,})"
    )


def main() -> None:
    # ``--threads N`` overrides torch's default (to compare when other jobs share the cores)
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {D_IN} features, {N_CLASSES} classes")
    models = {}
    for k, hidden in CONFIGS:
        models[k, hidden] = build(k, hidden)
        check(k, hidden, *models[k, hidden])
    cases = [(k, hidden, b) for k, hidden in CONFIGS for b in BATCHES]
    samples: dict[tuple, dict[str, list[float]]] = {case: {} for case in cases}
    gemm_n: dict[tuple, int] = {}
    for i in range(PASSES):
        for k, hidden, b in cases:
            voting, batched = models[k, hidden]
            x = torch.randn(b, D_IN)
            mm, scale, gemm_n[k, hidden, b] = cubic_mm(flops(k, hidden, b))
            weights = torch.cat([p.detach().flatten() for p in batched.parameters()])
            with torch.inference_mode():
                times = time_all(
                    {
                        "torchensemble": lambda x=x, m=voting: m(x),
                        "ensemblex": lambda x=x, m=batched: m.infer(x, reduce="softmax_mean"),
                        "naive": lambda x=x, m=batched: naive(m, x),
                        "gemm_limit": mm,
                        "read_weights": lambda w=weights: w.sum(),
                    },
                    ROUNDS_LARGE if b == max(BATCHES) else ROUNDS,
                )
            times["gemm_limit"] = [s * scale for s in times["gemm_limit"]]
            for name, ts in times.items():
                samples[k, hidden, b].setdefault(name, []).extend(ts)
        print(f"pass {i + 1} of {PASSES} done", flush=True)
    rows = []
    for k, hidden, b in cases:
        times = samples[k, hidden, b]
        t = {name: statistics.median(ts) for name, ts in times.items()}
        limit = t.pop("gemm_limit")
        read = t.pop("read_weights")
        # the speedup of each round (same noise for both), then their median and quartiles
        ratios = [a / c for a, c in zip(times["torchensemble"], times["ensemblex"])]
        q1, speedup, q3 = quartiles(ratios)
        row = {
            "k": k,
            "hidden": list(hidden),
            "batch": b,
            "threads": threads,
            "flops": flops(k, hidden, b),
            "gemm_n": gemm_n[k, hidden, b],
            "rounds": len(ratios),
            "seconds": {**t, "gemm_limit": limit, "read_weights": read},
            "weights_mb": sum(p.numel() for p in models[k, hidden][1].parameters()) * 4 / 1e6,
            "rows_per_s": {name: b / s for name, s in t.items()},
            "speedup_vs_torchensemble": speedup,
            "speedup_quartiles": [q1, q3],
            "fraction_of_limit": {name: limit / s for name, s in t.items()},
        }
        rows.append(row)
        print(
            f"K={k:5d} B={b:5d}  torchensemble {t['torchensemble'] * 1e3:9.3f} ms  "
            f"ensemblex {t['ensemblex'] * 1e3:9.3f} ms  naive {t['naive'] * 1e3:9.3f} ms  "
            f"limit {limit * 1e3:8.3f} ms  reading the weights {read * 1e3:7.3f} ms"
        )
    print(
        "\n    K hidden     B  speedup (quartiles)  rows/s ours  rows/s torchens  "
        "of limit: ours  torchens  naive"
    )
    for r in rows:
        print(
            f"{r['k']:5d} {len(r['hidden'])}x{r['hidden'][0]:<4d} {r['batch']:5d} "
            f"{r['speedup_vs_torchensemble']:7.2f}x ({r['speedup_quartiles'][0]:5.2f}-"
            f"{r['speedup_quartiles'][1]:5.2f}) {r['rows_per_s']['ensemblex']:12.0f} "
            f"{r['rows_per_s']['torchensemble']:16.0f} "
            f"{r['fraction_of_limit']['ensemblex']:15.1%} "
            f"{r['fraction_of_limit']['torchensemble']:9.1%} {r['fraction_of_limit']['naive']:6.1%}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = RESULTS if threads == DEFAULT_THREADS else RESULTS.with_stem(f"{RESULTS.stem}_{threads}t")
    out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
