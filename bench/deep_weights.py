"""Weight-space ensembles and distillation: soups, WiSE-FT, snapshots/EMA, distilled students.

Run: ``.venv/bin/python bench/deep_weights.py`` (about 5 minutes on 2 CPU cores). Reads
``../shared/data``; writes ``bench/results/deep_weights.json`` and prints the tables.

MNIST here is the 10,000-row MNIST test file, split once (seed 0) into 7,000 rows to train
on, 1,000 held-out rows (greedy-soup selection, WiSE-FT's alpha, early stopping) and 2,000
test rows that only the reported numbers read.

(a) Soups: one MLP pre-trained for 3 epochs, then fine-tunes from that shared start with other
    learning rates, epochs, weight decay, label smoothing and seeds (as the soups paper
    varies hyperparameters); uniform soup, greedy soup (held-out accuracy), WiSE-FT between
    the start and the best fine-tune, and the output ensemble of all fine-tunes.
(b) Distillation: a deep ensemble teaches a much smaller MLP on its averaged probabilities
    plus the labels (alpha=0.9), and on MNIST also on a transfer set of the training rows
    plus 2 mixup copies labelled by the teacher alone. Teachers: 5 x 2x512 with dropout 0.3
    on MNIST (trained on the 8,000 fit + held-out rows with its own 10% early-stopping
    split; without dropout it is near-certain on its training rows, so its soft targets add
    little to the labels), 5 x 2x256 on adult. "single" is one teacher-sized member (the
    mean of the 5 members' scores); the student architecture trained on labels alone is
    reported too. Share of gain kept = (student - single) / (ensemble - single); students
    are averaged over 3 seeds.
(c) Snapshots: one run with a cyclic cosine learning rate, a member per cycle, and the
    online model's EMA twin.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, log_loss
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ensemblex.deep import DeepEnsembleClassifier
from ensemblex.deep.checkpoints import stacked_predictions, train_snapshots
from ensemblex.deep.distillation import (
    distill,
    flops_per_sample,
    share_of_gain_kept,
)
from ensemblex.deep.soups import greedy_soup, make_score_fn, uniform_soup, wise_ft
from zoo import load_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "deep_weights.json"
SEED = 0
STUDENT_SEEDS = (0, 1, 2)


def mlp(d_in: int, hidden: tuple[int, ...], d_out: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, width = [], d_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def scores(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    proba = np.clip(proba, 1e-12, 1)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(accuracy_score(y, proba.argmax(axis=1))),
        "log_loss": float(log_loss(y, proba, labels=np.arange(proba.shape[1]))),
    }


def proba_of(net: nn.Module, state, X) -> np.ndarray:
    return stacked_predictions(net, [state], X, task="multiclass")[:, 0]


def table(title: str, rows: list[dict], columns: list[str]) -> None:
    print(f"\n{title}")
    frame = pd.DataFrame(rows)[columns]
    if "flops_per_sample" in frame:
        frame["flops_per_sample"] = frame["flops_per_sample"].map(lambda v: f"{v:,.0f}")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def train_plain(
    net, X, y, *, epochs, lr, weight_decay=0.0, label_smoothing=0.0, batch_size=128, seed=0
):
    """SGD with momentum and a cosine decay to 0, as a fine-tune in the soups paper."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * (len(X) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            F.cross_entropy(net(X[idx]), y[idx], label_smoothing=label_smoothing).backward()
            opt.step()
            sched.step()
    net.eval()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# ---------------------------------------------------------------- data
def load_mnist():
    df = pd.read_csv(DATA / "mnist_test.csv.gz")
    X = ((df.drop(columns="label").to_numpy(np.float32) / 255.0) - 0.1307) / 0.3081
    y = df["label"].to_numpy(np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    fit, val, test = order[:7000], order[7000:8000], order[8000:]
    return (X[fit], y[fit]), (X[val], y[val]), (X[test], y[test])


def load_adult():
    ds = load_dataset("adult")
    target = ds.target
    frames = [ds.train.drop(columns=target), ds.test.drop(columns=target)]
    both = pd.concat(frames, keys=["train", "test"])
    numeric = both.select_dtypes("number").columns
    both[numeric] = (both[numeric] - both.loc["train", numeric].mean()) / both.loc[
        "train", numeric
    ].std()
    both = pd.get_dummies(both, dummy_na=True, dtype=np.float32).astype(np.float32)

    def labels(frame):  # the test file writes ">50K." with a full stop
        return frame[target].str.strip().str.rstrip(".").eq(">50K").to_numpy(np.int64)

    X_tr, y_tr = both.loc["train"].to_numpy(), labels(ds.train)
    X_te, y_te = both.loc["test"].to_numpy(), labels(ds.test)
    order = np.random.default_rng(SEED).permutation(len(y_tr))
    val, fit = order[:3000], order[3000:]
    return (X_tr[fit], y_tr[fit]), (X_tr[val], y_tr[val]), (X_te, y_te)


# ---------------------------------------------------------------- (a) soups
PRETRAIN = {"epochs": 3, "lr": 0.05}
FINETUNES = [  # lr, epochs, weight decay, label smoothing, seed
    (0.005, 4, 0.0, 0.0, 0),
    (0.01, 4, 1e-4, 0.0, 1),
    (0.02, 3, 0.0, 0.1, 2),
    (0.03, 4, 5e-4, 0.0, 3),
    (0.01, 6, 1e-4, 0.1, 4),
    (0.05, 3, 0.0, 0.0, 5),
    (0.02, 6, 5e-4, 0.1, 6),
    (0.05, 5, 1e-4, 0.0, 7),
]


def soups(mnist) -> dict:
    (X_fit, y_fit), (X_val, y_val), (X_te, y_te) = mnist
    net = mlp(784, (256, 256), 10, seed=SEED)
    start = train_plain(net, X_fit, y_fit, **PRETRAIN, seed=SEED)
    rows, states = [], []
    for i, (lr, epochs, wd, ls, seed) in enumerate(FINETUNES):
        net.load_state_dict(start)
        state = train_plain(
            net,
            X_fit,
            y_fit,
            epochs=epochs,
            lr=lr,
            weight_decay=wd,
            label_smoothing=ls,
            seed=seed,
        )
        states.append(state)
        rows.append(
            {
                "model": f"finetune{i}",
                "lr": lr,
                "epochs": epochs,
                "weight_decay": wd,
                "label_smoothing": ls,
                "seed": seed,
                "val_accuracy": scores(proba_of(net, state, X_val), y_val)["accuracy"],
                **{f"test_{k}": v for k, v in scores(proba_of(net, state, X_te), y_te).items()},
            }
        )
    score_fn = make_score_fn(X_val, y_val, task="multiclass", metric="accuracy")
    greedy = greedy_soup(net, states, score_fn)
    uniform = uniform_soup(states)
    best = int(np.argmax([r["val_accuracy"] for r in rows]))
    wise = wise_ft(net, start, states[best], score_fn, alphas=np.linspace(0, 1, 11))
    members = stacked_predictions(net, states, X_te, task="multiclass")

    def summary(name, state=None, proba=None, **extra):
        proba = proba_of(net, state, X_te) if proba is None else proba
        val = proba_of(net, state, X_val) if state is not None else None
        return {
            "model": name,
            "val_accuracy": scores(val, y_val)["accuracy"] if val is not None else np.nan,
            **{f"test_{k}": v for k, v in scores(proba, y_te).items()},
            **extra,
        }

    out_rows = [
        summary("pretrained start (shared)", start),
        {**rows[best], "model": f"best single by val (finetune{best})"},
        max(rows, key=lambda r: r["test_accuracy"]) | {"model": "best single on test (oracle)"},
        summary("uniform soup (all 8)", uniform),
        summary(
            "greedy soup",
            greedy.state,
            ingredients=",".join(f"finetune{i}" for i in greedy.ingredients),
        ),
        summary(f"WiSE-FT start->finetune{best}, alpha={wise.alpha:.1f}", wise.state),
        summary("output ensemble of all 8 (8x cost)", proba=members.mean(axis=1)),
    ]
    table(
        "(a) fine-tunes of one MNIST MLP (784-256-256-10) from a shared start",
        rows,
        [
            "model",
            "lr",
            "epochs",
            "weight_decay",
            "label_smoothing",
            "val_accuracy",
            "test_accuracy",
            "test_log_loss",
        ],
    )
    table(
        "(a) soups (greedy selection and WiSE-FT alpha on the 1,000 held-out rows)",
        out_rows,
        ["model", "val_accuracy", "test_accuracy", "test_log_loss"],
    )
    print(
        f"greedy soup ingredients (order added): {greedy.ingredients}; "
        f"WiSE-FT val accuracy per alpha: "
        + ", ".join(f"{a:.1f}:{s:.3f}" for a, s in wise.scores.items())
    )
    best_single_test = out_rows[1]["test_accuracy"]
    print(
        f"greedy soup - best single (by val) on test: "
        f"{out_rows[4]['test_accuracy'] - best_single_test:+.4f}"
    )
    return {
        "finetunes": rows,
        "summary": out_rows,
        "greedy_ingredients": greedy.ingredients,
        "greedy_trace": [list(t) for t in greedy.trace],
        "wise_ft_scores": {str(a): s for a, s in wise.scores.items()},
        "wise_ft_alpha": wise.alpha,
    }


# ---------------------------------------------------------------- (b) distillation
def distillation(
    name,
    data,
    *,
    teacher_hidden,
    teacher_dropout,
    student_hidden,
    teacher_epochs,
    student_epochs,
    mixup_copies,
):
    (X_fit, y_fit), (X_val, y_val), (X_te, y_te) = data
    n_classes = int(max(y_fit.max(), y_te.max())) + 1
    t0 = time.perf_counter()
    X_all, y_all = np.concatenate([X_fit, X_val]), np.concatenate([y_fit, y_val])
    teacher = DeepEnsembleClassifier(
        n_members=5,
        hidden=teacher_hidden,
        dropout=teacher_dropout,
        max_epochs=teacher_epochs,
        patience=3,
        batch_size=128,
        random_state=SEED,
    ).fit(X_all, y_all)
    assert list(teacher.classes_) == list(range(n_classes))
    members = teacher.predict_members(X_te)  # (n, 5, k)
    ensemble = scores(members.mean(axis=1), y_te)
    per_member = [scores(members[:, j], y_te) for j in range(members.shape[1])]
    single = {k: float(np.mean([m[k] for m in per_member])) for k in ensemble}
    teacher_seconds = time.perf_counter() - t0

    # the student reads the teacher's standardised inputs, so both see the same features
    def inputs(X):
        return ((X - teacher.x_mean_) / teacher.x_scale_).astype(np.float32)

    # the teacher has seen X_fit and is near-certain there; a transfer set of mixup copies
    # (convex mixes of two training rows, labelled by the teacher only) shows more of the
    # teacher's function, as in Beyer et al. 2022's "function matching"
    rng = np.random.default_rng(SEED)
    mixes = []
    for _ in range(mixup_copies):
        other, lam = rng.permutation(len(X_fit)), rng.uniform(size=(len(X_fit), 1))
        mixes.append((lam * X_fit + (1 - lam) * X_fit[other]).astype(np.float32))
    variants = [("student on labels only", X_fit, y_fit, 0.0)]
    variants.append(("student distilled (alpha=0.9)", X_fit, y_fit, 0.9))
    if mixup_copies:
        X_mix = np.concatenate([X_fit, *mixes])
        variants.append((f"student distilled (+{mixup_copies} mixup copies)", X_mix, None, 1.0))
    # a student's score moves by about 0.01 log-loss from seed to seed: average STUDENT_SEEDS
    results, per_seed = {}, {}
    for label, X_transfer, y_transfer, alpha in variants:
        teach = teacher.predict_proba(X_transfer)
        per_seed[label] = []
        for seed in STUDENT_SEEDS:
            student = mlp(X_fit.shape[1], student_hidden, n_classes, seed=seed)
            distill(
                student,
                inputs(X_transfer),
                teach,
                y_transfer,
                task="multiclass",
                alpha=alpha,
                epochs=student_epochs,
                lr=2e-3,
                weight_decay=1e-4,
                batch_size=128,
                validation=(inputs(X_val), y_val),
                patience=4,
                random_state=seed,
            )
            proba = proba_of(student, student.state_dict(), inputs(X_te))
            per_seed[label].append(scores(proba, y_te))
        runs = per_seed[label]
        results[label] = {
            **{k: float(np.mean([r[k] for r in runs])) for k in ("accuracy", "log_loss")},
            "log_loss_sd": float(np.std([r["log_loss"] for r in runs])),
        }
    x = torch.from_numpy(inputs(X_te[:64]))
    flops_ensemble = flops_per_sample(teacher.model_, x)
    flops_student = flops_per_sample(student, x)
    rows = [
        {
            "model": f"single member ({'x'.join(map(str, teacher_hidden))}, mean of 5)",
            **single,
            "log_loss_sd": float(np.std([m["log_loss"] for m in per_member])),
            "flops_per_sample": flops_ensemble / 5,
        },
        {"model": "ensemble of 5 (teacher)", **ensemble, "flops_per_sample": flops_ensemble},
    ]
    for label, s in results.items():
        rows.append(
            {
                "model": f"{label} ({'x'.join(map(str, student_hidden))})",
                **s,
                "flops_per_sample": flops_student,
            }
        )
    for row in rows:
        row["gain_kept_accuracy"] = share_of_gain_kept(
            row["accuracy"], single["accuracy"], ensemble["accuracy"]
        )
        row["gain_kept_log_loss"] = share_of_gain_kept(
            row["log_loss"], single["log_loss"], ensemble["log_loss"]
        )
    table(
        f"(b) distillation on {name} (test rows: {len(y_te)})",
        rows,
        [
            "model",
            "accuracy",
            "log_loss",
            "gain_kept_accuracy",
            "gain_kept_log_loss",
            "log_loss_sd",
            "flops_per_sample",
        ],
    )
    print(f"student rows: mean of {len(STUDENT_SEEDS)} seeds (log_loss_sd across them)")
    ratio = flops_ensemble / flops_student
    print(
        f"compute: ensemble {flops_ensemble:,.0f} FLOPs/sample, student {flops_student:,.0f}: "
        f"{ratio:.1f}x less; teacher trained in {teacher_seconds:.0f}s"
    )
    return {
        "rows": rows,
        "flops_ratio_ensemble_over_student": ratio,
        "flops_ratio_single_over_student": ratio / 5,
    }


# ---------------------------------------------------------------- (c) snapshots and EMA
def snapshots(mnist) -> dict:
    (X_fit, y_fit), _, (X_te, y_te) = mnist
    net = mlp(784, (256, 256), 10, seed=SEED)
    run = train_snapshots(
        net,
        X_fit,
        y_fit,
        task="multiclass",
        n_cycles=5,
        epochs_per_cycle=4,
        lr=0.05,
        weight_decay=5e-4,
        batch_size=128,
        ema_decay=0.998,
        random_state=SEED,
    )
    P = run.predictions(net, X_te)
    rows = [{"model": m, **scores(P.member(m), y_te)} for m in P.members]
    snaps = [m for m in P.members if m.startswith("snapshot")]
    rows.append(
        {
            "model": f"snapshot ensemble ({len(snaps)})",
            **scores(P.select(snaps).values.mean(axis=1), y_te),
        }
    )
    rows.append(
        {
            "model": "online + ema pair",
            **scores(P.select(["online", "ema"]).values.mean(axis=1), y_te),
        }
    )
    table(
        "(c) snapshot ensemble (5 cosine cycles x 4 epochs) and online/EMA on MNIST",
        rows,
        ["model", "accuracy", "log_loss"],
    )
    return {"rows": rows, "lrs_per_epoch": run.lrs, "train_loss_per_epoch": run.history}


def main() -> None:
    # small networks on a shared 2-core machine: one thread avoids oversubscription stalls
    torch.set_num_threads(1)
    start = time.perf_counter()
    mnist = load_mnist()
    out = {"setup": "MNIST 7,000 fit / 1,000 held-out / 2,000 test rows; adult own test file"}
    t = time.perf_counter()
    out["soups"] = soups(mnist)
    print(f"[(a) {time.perf_counter() - t:.0f}s]")
    t = time.perf_counter()
    out["snapshots"] = snapshots(mnist)
    print(f"[(c) {time.perf_counter() - t:.0f}s]")
    t = time.perf_counter()
    out["distillation_mnist"] = distillation(
        "MNIST",
        mnist,
        teacher_hidden=(512, 512),
        teacher_dropout=0.3,
        student_hidden=(128,),
        teacher_epochs=15,
        student_epochs=20,
        mixup_copies=2,
    )
    print(f"[(b) MNIST {time.perf_counter() - t:.0f}s]")
    t = time.perf_counter()
    out["distillation_adult"] = distillation(
        "adult",
        load_adult(),
        teacher_hidden=(256, 256),
        teacher_dropout=0.0,
        student_hidden=(16,),
        teacher_epochs=15,
        student_epochs=30,
        mixup_copies=0,
    )
    print(f"[(b) adult {time.perf_counter() - t:.0f}s]")
    out["seconds"] = time.perf_counter() - start
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=float))
    print(f"\nwrote {RESULTS} in {out['seconds']:.0f}s")


if __name__ == "__main__":
    main()
