"""Published headline claims beside what ensemblex measures on our data.

    .venv/bin/python bench/claims.py [--readme]

Every figure in the "ensemblex" column is read from a bench script's results file
(bench/results/*.json, written by the script named in the row); the paper's figure and the
reason for the difference are text. With ``--readme`` the table replaces the ``claims``
section of README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme import replace_section

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run bench/{name}.py first")
    return json.loads(path.read_text())


def _rows(board: dict) -> dict:
    return board["rows"]


def regularized_meta_learning(combiners: dict) -> list[str]:
    cells, holds, faster = [], [], []
    for name in ("california", "diamonds"):
        if name not in combiners:
            continue
        rows = _rows(combiners[name])
        four, greedy, mean = (
            rows[k]["test"] for k in ("stacking, four-stage", "greedy (25 it.)", "mean")
        )
        seconds = rows["stacking, four-stage"]["seconds"], rows["greedy (25 it.)"]["seconds"]
        holds.append(four < greedy < mean)
        faster.append(seconds[0] < seconds[1])
        cells.append(
            f"{name} RMSE: four-stage {four:,.0f}, hill climbing {greedy:,.0f}, mean {mean:,.0f} "
            f"(fit {seconds[0]:.3f} s vs {seconds[1]:.3f} s)"
        )
    ranking = (
        "the ranking holds on both regression zoos (four-stage < hill climbing < mean)"
        if all(holds)
        else "the ranking four-stage < hill climbing < mean holds on "
        f"{sum(holds)} of {len(holds)} regression zoos"
    )
    speed = (
        "its speed claim holds too"
        if all(faster)
        else "its speed claim does not: greedy selection here scores all candidates in one "
        "vectorised step, faster than the four-stage pipeline's cross-validated meta-models"
    )
    return [
        "Regularized Meta-Learning: four-stage stack 8.582 vs hill climbing 8.603 vs mean "
        "8.894, and 4x faster",
        "; ".join(cells),
        "bench/combiners.py",
        f"The paper's task and members are not ours; {ranking}; {speed}.",
    ]


def stroke(combiners: dict) -> list[str]:
    res = combiners["stroke"]
    rows = _rows(res)
    maj, best, auto = res["majority_class"], rows["best single (OOF)"], rows["AutoCombiner"]
    return [
        "Hybrid stacking for stroke prediction: 97.2% accuracy",
        f"accuracy {auto['accuracy']:.2%} (best single {best['accuracy']:.2%}, majority class "
        f"{maj['accuracy']:.2%}); AUC {auto['auc']:.3f} (best single {best['auc']:.3f}); "
        f"log-loss {auto['test']:.4f} (best single {best['test']:.4f}, prior "
        f"{maj['test']:.4f})",
        "bench/combiners.py",
        "healthcare_stroke.csv is 95% negative, so on an honest split accuracy barely moves "
        "off the majority class; a figure well above it usually comes from oversampling "
        "before the split, which puts copies of test rows into training. Ours: a stratified "
        "20% test split, members and combiner fit on the other 80% only, no resampling; AUC "
        "and log-loss show what the models do learn.",
    ]


def tabm(deep: dict) -> list[str]:
    paper = {"california": 0.4414, "adult": 0.8575, "churn": 0.8605}
    cells = []
    for name, figure in paper.items():
        res = deep[name]
        key = "rmse" if res["task"] == "regression" else "accuracy"
        plain, ple = res["tabm"][key], res["tabm_piecewise"][key]
        cells.append(f"{name} {plain:.4f} / {ple:.4f} (paper {figure})")
    return [
        "TabM: California RMSE .4414, adult accuracy .8575, churn .8605",
        "TabM / TabM-mini with piecewise-linear embeddings: " + "; ".join(cells),
        "bench/deep.py tabular",
        "Met on adult and churn; California 2.1% behind: our 1990-census table and split "
        "differ from the paper's, d_block 256 instead of 512, and a 40-epoch cap that both "
        "runs reached still improving (CPU budget).",
    ]


def soups(deep: dict) -> list[str]:
    summary = {row["model"]: row for row in deep["soups"]["summary"]}
    best = next(v for k, v in summary.items() if k.startswith("best single by val"))
    greedy = summary["greedy soup"]
    return [
        "Model soups: greedy soup 81.03% vs best single fine-tune 80.39% (ImageNet)",
        f"MNIST MLP fine-tunes: greedy soup {greedy['test_accuracy']:.2%} vs best single "
        f"{best['test_accuracy']:.2%} test accuracy (held-out {greedy['val_accuracy']:.1%} vs "
        f"{best['val_accuracy']:.1%})",
        "bench/deep.py weights",
        "Same direction, smaller gap: 8 fine-tunes of a small MLP from a 3-epoch start, not "
        "CLIP/ViT fine-tunes of a large pre-trained model, whose fine-tunes share one basin "
        "more closely; the difference here is one test row in 2,000.",
    ]


def distillation(deep: dict) -> list[str]:
    adult = deep["distillation_adult"]
    student = next(r for r in adult["rows"] if r["model"].startswith("student distilled"))
    mnist = deep["distillation_mnist"]["rows"]
    mixup = next(r for r in mnist if "mixup" in r["model"])
    teacher = next(r for r in mnist if "teacher" in r["model"])
    return [
        "Ensemble distillation: 83% of the ensemble's gain kept at 8x less compute",
        f"adult: {student['gain_kept_log_loss']:.0%} of the log-loss gain at 1/"
        f"{adult['flops_ratio_ensemble_over_student']:.0f} of the FLOPs; MNIST (mixup transfer "
        f"set): {mixup['gain_kept_log_loss']:.0%} at 1/"
        f"{teacher['flops_per_sample'] / mixup['flops_per_sample']:.0f}",
        "bench/deep.py weights",
        "Our students are 33-258x smaller than the teachers (the paper's 8x), so they keep "
        "less of the gain; on MNIST the teacher is near-certain on its own training rows and "
        "soft targets add little without a transfer set.",
    ]


def cascades(cascade: dict) -> list[str]:
    cells = [
        f"{name}: {r['relative_cost']:.0%} of the cost at coverage {r['coverage_at_5pct_risk']:.3f}"
        f" vs {r['full_coverage_at_5pct_risk']:.3f}"
        for name, r in cascade.items()
        if "coverage_at_5pct_risk" in r
    ]
    return [
        "Window-based cascades: under 30% of the MACs at the same coverage at 5% risk",
        "; ".join(cells),
        "bench/cascade.py",
        "Tabular members cost about the same and disagree on the same hard rows, so fewer "
        "rows exit at the cheap stages than with image models of 10-100x different size; "
        "cost here is measured predict time, not MACs.",
    ]


def build() -> str:
    combiners, deep = load("combiners"), {}
    for name in ("deep_tabular", "deep_weights"):
        deep[name] = load(name)
    rows = [
        regularized_meta_learning(combiners),
        stroke(combiners),
        tabm(deep["deep_tabular"]),
        soups(deep["deep_weights"]),
        distillation(deep["deep_weights"]),
        cascades(load("cascade")),
    ]
    lines = [
        "| published claim | ensemblex on our data | bench script | why they differ |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    table = build()
    print(table)
    if "--readme" in argv:
        replace_section("claims", table)


if __name__ == "__main__":
    main(sys.argv[1:])
