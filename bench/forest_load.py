"""Loading scikit-learn forests: one skops file against a skops shell plus safetensors trees.

    .venv/bin/python bench/forest_load.py [--repeats 5]

Two forests like the churn model's (a 150-tree random forest, min_samples_leaf=3,
max_features="sqrt"; a 100-tree extra-trees model, min_samples_leaf=2) fit on 8,000 rows x
12 features of ``make_classification``. Each is saved both ways; the script prints the best
of ``--repeats`` load times, the SHA-256 time of the files (``load_member`` digests them
before reading), file sizes, the compression of the trees' arrays (LZ4 as saved, against
gzip level 6: size and time to inflate), and checks that the loaded forests
predict bit for bit as the fitted ones.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from ensemblex.files import sha256_file
from ensemblex.members.forest_io import LZ4_MAGIC, TREES_FILE, dump_forest, load_forest, pa_codec
from ensemblex.members.skops_io import dump_skops, load_skops


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name: str, model, X, folder: Path, repeats: int) -> tuple[float, float]:
    """Print one forest's numbers; return its digest + load seconds, skops and new."""
    old, new = folder / "old", folder / "new"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    start = time.perf_counter()
    dump_skops(model, old / "model.skops")
    s_old = time.perf_counter() - start
    start = time.perf_counter()
    trees = dump_forest(model, new / "model.skops")
    s_new = time.perf_counter() - start
    load_skops(old / "model.skops")  # warm the imports
    t_old = best(lambda: load_skops(old / "model.skops"), repeats)
    t_new = best(lambda: load_forest(new / "model.skops"), repeats)
    h_old = best(lambda: sha256_file(old / "model.skops"), repeats)
    h_new = best(lambda: [sha256_file(new / f) for f in ("model.skops", TREES_FILE)], repeats)

    head = len(LZ4_MAGIC) + 8
    (n_raw,) = struct.unpack_from("<Q", trees.read_bytes(), len(LZ4_MAGIC))
    packed = trees.read_bytes()[head:]
    raw = pa_codec().decompress(packed, decompressed_size=n_raw, asbytes=True)
    t_lz4 = best(lambda: pa_codec().decompress(packed, n_raw, asbytes=True), repeats)
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    t_gz = best(lambda: gzip.decompress(gz), repeats)

    loaded = load_forest(new / "model.skops")
    model.n_jobs = loaded.n_jobs = 1  # threads would sum the trees in any order
    same = np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    same &= np.array_equal(loaded.apply(X), model.apply(X))
    size_old = (old / "model.skops").stat().st_size
    size_new = sum(p.stat().st_size for p in new.iterdir())
    nodes = sum(t.tree_.node_count for t in model.estimators_)
    print(f"{name}: {nodes:,} nodes")
    print(f"  load    skops {t_old:.3f} s   shell+trees {t_new:.3f} s   ({t_old / t_new:.1f}x)")
    print(f"  save    skops {s_old:.3f} s   shell+trees {s_new:.3f} s")
    print(f"  sha256  skops {h_old:.4f} s   shell+trees {h_new:.4f} s")
    print(f"  size    skops {size_old / 1e6:.2f} MB   shell+trees {size_new / 1e6:.2f} MB")
    print(
        f"  trees   arrays {len(raw) / 1e6:.2f} MB; LZ4 {len(packed) / 1e6:.2f} MB, "
        f"inflates in {t_lz4:.4f} s; gzip-6 {len(gz) / 1e6:.2f} MB, in {t_gz:.4f} s"
    )
    print(f"  predict_proba and apply bit-identical: {same}")
    return t_old + h_old, t_new + h_new


def main(repeats: int) -> None:
    X, y = make_classification(8000, 12, n_informative=8, flip_y=0.05, random_state=0)
    models = {
        "random forest (150)": RandomForestClassifier(
            150, min_samples_leaf=3, max_features="sqrt", random_state=0, n_jobs=2
        ),
        "extra trees (100)": ExtraTreesClassifier(
            100, min_samples_leaf=2, random_state=0, n_jobs=2
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        totals = np.zeros(2)
        for i, (name, model) in enumerate(models.items()):
            totals += measure(name, model.fit(X, y), X, Path(tmp, str(i)), repeats)
        print(
            f"both forests, digest + load: skops {totals[0]:.3f} s, "
            f"shell+trees {totals[1]:.3f} s ({totals[0] / totals[1]:.1f}x)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
