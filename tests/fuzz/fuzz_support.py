"""Shared pieces of the fuzz suite: generated tables, damaged run folders, and the one
property every CLI command must keep (the profile and fixtures are wired in ``conftest.py``).

The property: exit code 0 with a valid output, or exit code 2 with exactly one line on stderr
(``error: ...``) and nothing written (no output file, no temporary file beside it). Never
another exit code, never a traceback, never a hang.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ensemblex.cli import app

settings.register_profile(
    "ensemblex-fuzz",
    deadline=None,
    derandomize=True,  # the same cases on every run: CI is reproducible
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)


def fuzz(max_examples: int):
    """The suite's settings with ``max_examples`` generated cases."""
    return settings(settings.get_profile("ensemblex-fuzz"), max_examples=max_examples)


# ---------------------------------------------------------------- the property
RUNNER = CliRunner()
HANG_SECONDS = 60


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"the command ran longer than {HANG_SECONDS} s")


COMMAND = [""]  # the command of the last invoke, for the counts


def invoke(args: list[str]):
    """Run the CLI in-process with ``args``; a command that hangs is stopped and reported."""
    COMMAND[0] = str(args[0])
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        return RUNNER.invoke(app, [str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _describe(result) -> str:
    import traceback

    text = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        text += "\n" + "".join(traceback.format_exception(*result.exc_info))
    return text


def temporaries(folder: Path) -> list[Path]:
    """Leftover temporary files or folders of an atomic writer (``.name.*.tmp``/``.old``)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.glob(".*") if p.name.endswith((".tmp", ".old"))]


OUTCOMES: dict[str, dict[str, int]] = {}  # command -> {"exit 0": n, "exit 2": n}


def check_outcome(
    result,
    outputs: list[Path],
    validate: Callable[[], None],
    unchanged: Callable[[], None] | None = None,
) -> int:
    """Assert the property; return the exit code (0 or 2).

    ``outputs``: the paths the command writes (none may exist after an error); ``validate``
    checks them after a success; ``unchanged`` asserts that nothing else was written.
    """
    info = _describe(result)
    kind = "usage" if usage_error(result) else f"exit {result.exit_code}"
    counts = OUTCOMES.setdefault(COMMAND[0], {})
    counts[kind] = counts.get(kind, 0) + 1
    if os.environ.get("ENSEMBLEX_FUZZ_LOG"):
        with open(os.environ["ENSEMBLEX_FUZZ_LOG"], "a") as fh:
            fh.write(f"{COMMAND[0]}\t{kind}\t{' '.join(result.stderr.split())[:150]}\n")
    exc = result.exception
    assert exc is None or (isinstance(exc, SystemExit) and exc.code in (0, 2)), info
    assert result.exit_code in (0, 2), info
    for out in outputs:
        assert not temporaries(out.parent), f"temporary files left beside {out}\n{info}"
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        if not usage_error(result):  # click's own refusal of an option is several lines
            assert len(lines) == 1 and lines[0].startswith("error: "), info
        for out in outputs:
            assert not out.exists() and not out.is_symlink(), f"{out} written on error\n{info}"
        if unchanged is not None:
            unchanged()
    else:
        validate()
    return result.exit_code


# ---------------------------------------------------------------- values and names
TEXT = st.lists(
    st.sampled_from([*list("ab z,;:\"'\n\t\\/.-_[]{}<>?é中😀\x00\r01"), "[/]", "[bold]"]),
    max_size=6,
).map("".join)
NAMES = st.one_of(
    st.sampled_from(["a", "b", "x", "y", "target", "id", "row", "a:0", "a:1", "m:mean"]),
    TEXT,
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(0, 1),
    st.sampled_from([0.0, 1.0, 0.5, -1.0, 1e308, -1e-308, math.nan, math.inf]),
)
CELLS = st.one_of(FLOATS, st.integers(-(2**63), 2**63 - 1), TEXT, st.booleans(), st.none())


@st.composite
def columns(draw, n_rows: int):
    """One column of ``n_rows`` cells of a random kind."""
    kind = draw(
        st.sampled_from(["int", "float", "prob", "bool", "text", "mixed", "nan", "const", "label"])
    )
    if kind == "int":
        values = draw(st.lists(st.integers(-5, 5), min_size=n_rows, max_size=n_rows))
    elif kind == "float":
        values = draw(st.lists(FLOATS, min_size=n_rows, max_size=n_rows))
    elif kind == "prob":
        values = draw(st.lists(st.floats(0, 1), min_size=n_rows, max_size=n_rows))
    elif kind == "bool":
        values = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
    elif kind == "text":
        values = draw(st.lists(TEXT, min_size=n_rows, max_size=n_rows))
    elif kind == "mixed":
        values = draw(st.lists(CELLS, min_size=n_rows, max_size=n_rows))
    elif kind == "nan":
        values = [math.nan] * n_rows
    elif kind == "const":
        values = [draw(CELLS)] * n_rows
    else:
        labels = draw(st.lists(st.sampled_from(["0", "1", "2", 0, 1, 2, "yes", "no"]), min_size=1))
        values = [labels[i % len(labels)] for i in range(n_rows)]
    return values


def frame_of(names: list, values: list[list]) -> pd.DataFrame:
    """A DataFrame that may hold duplicate column names."""
    if not names:
        return pd.DataFrame()
    parts = [pd.Series(v, name=n, dtype=object if not v else None) for n, v in zip(names, values)]
    frame = pd.concat(parts, axis=1)
    frame.columns = names
    return frame


@st.composite
def raw_frames(draw, min_cols: int = 0, max_cols: int = 5, max_rows: int = 12):
    """Tables of random dtypes: NaN/inf, unicode and duplicate names, empty, one row."""
    n_rows = draw(st.sampled_from([0, 1, 2, 3, max_rows]) | st.integers(0, max_rows))
    names = draw(st.lists(NAMES, min_size=min_cols, max_size=max_cols))
    values = [draw(columns(n_rows)) for _ in names]
    return frame_of(names, values)


# ---------------------------------------------------------------- files
FORMATS = st.sampled_from(["csv"] * 6 + ["parquet"] * 2 + ["csv.gz", "bytes", "missing", "folder"])
JUNK = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"\n",
            b"a,b\n",
            b"a,a\n1,2\n",
            b"\xef\xbb\xbfa,b\n1,2\n",
            b"PAR1\x00\x00PAR1",
            b"\x1f\x8b\x08\x00garbage",
            b'a,"b\n1,2\n',
            b"a\x00b\n1\x002\n",
        ]
    ),
)


def write_table(frame: pd.DataFrame, folder: Path, name: str, fmt: str, junk: bytes = b"") -> Path:
    """Write ``frame`` as ``fmt``; ``bytes`` writes ``junk`` instead, ``missing`` writes
    nothing, ``folder`` makes a directory of that name. A table that Parquet cannot hold is
    written as CSV under the Parquet name (itself a damaged input)."""
    path = folder / f"{name}.{fmt if fmt in ('csv', 'parquet', 'csv.gz') else 'csv'}"
    if fmt == "bytes":
        path.write_bytes(junk)
    elif fmt == "folder":
        path.mkdir()
    elif fmt == "parquet":
        try:
            frame.to_parquet(path, index=False)
        except Exception:
            frame.to_csv(path, index=False)
    elif fmt == "csv.gz":
        frame.to_csv(path, index=False, compression="gzip")
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@contextmanager
def case_dir(base: Path):
    """A fresh folder for one generated case, removed afterwards."""
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- run folders
def _build_run(base: Path, name: str, extra: list[str]) -> Path:
    from ensemblex.cli.app import example_path

    data = base / f"{name}.csv"
    pd.read_csv(example_path("churn_modelling.csv")).head(300).to_csv(data, index=False)
    out = base / name
    args = ["run", data, "--target", "Exited", "--folds", "2", "--jobs", "1", "--out", out]
    result = invoke([*args, *extra])
    assert result.exit_code == 0, _describe(result)
    shutil.rmtree(out / "work")  # predict, report and cascade never read it
    return out


@pytest.fixture(scope="session")
def churn_run(tmp_path_factory) -> Path:
    """ONE real run folder: the fast zoo on 300 rows of the bundled churn table."""
    return _build_run(tmp_path_factory.mktemp("runs"), "fast", ["--zoo", "fast"])


def cheap_zoo(name: str, task: str, random_state: int = 0):
    """Two quick members: one-hot encoded (linear) and native categorical (LightGBM)."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    from ensemblex.members.zoo import member

    reg = task == "regression"
    lgbm = (LGBMRegressor if reg else LGBMClassifier)(
        n_estimators=3, num_leaves=4, min_child_samples=1, verbose=-1, n_jobs=1
    )
    return [
        member("linear", Ridge() if reg else LogisticRegression(max_iter=200)),
        member("lgbm", lgbm),
    ]


@contextmanager
def cheap_zoo_patched():
    """``--zoo fast`` cross-fits :func:`cheap_zoo` (the CLI and its validation stay real)."""
    import sys

    import ensemblex.members
    import ensemblex.members.zoo  # the module (its name is shadowed by the function)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ensemblex.members, "zoo", cheap_zoo)
        # table_zoo (what `run` calls) reaches the zoo through its module
        mp.setattr(sys.modules["ensemblex.members.zoo"], "zoo", cheap_zoo)
        yield


@pytest.fixture(scope="session")
def cheap_run(tmp_path_factory) -> Path:
    """A run folder of :func:`cheap_zoo` on the same rows: cheap to load, for fuzzing inputs."""
    with cheap_zoo_patched():
        return _build_run(tmp_path_factory.mktemp("runs"), "cheap", ["--zoo", "fast"])


def copy_run(run: Path, folder: Path) -> Path:
    dest = folder / "run"
    shutil.copytree(run, dest, symlinks=True)
    return dest


def run_files(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


# ---------------------------------------------------------------- damage
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        TEXT,
        st.sampled_from(
            [
                "../../../../etc/passwd",
                "/etc/passwd",
                "members/../../x",
                "",
                ".",
                "combiner",
                "member",
                "combiner (chosen)",
                "<script>alert(1)</script>",
                "log_loss",
                "binary",
                "regression",
                "multiclass",
                "EnsembleRegressor",
                "sklearn",
                "lightgbm",
            ]
        ),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def json_edits(draw):
    """A random edit of a JSON document: a path (choices at each level) and what to do there."""
    path = draw(st.lists(st.integers(0, 10**6), min_size=0, max_size=6))
    op = draw(st.sampled_from(["set", "set", "delete", "wrap", "type"]))
    value = draw(JSON_VALUES)
    return path, op, value


def apply_json_edit(doc, edit):
    path, op, value = edit
    if op == "type" or not path:
        if not path:
            return value
    parent, key, node = None, None, doc
    for choice in path:
        if isinstance(node, dict) and node:
            k = sorted(node, key=str)[choice % len(node)]
        elif isinstance(node, list) and node:
            k = choice % len(node)
        else:
            break
        parent, key, node = node, k, node[k]
    if parent is None:
        return value
    if op == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif op == "wrap":
        parent[key] = [node]
    elif op == "type":
        parent[key] = str(node) if not isinstance(node, str) else len(node)
    else:
        parent[key] = value
    return doc


DAMAGES = st.sampled_from(
    [
        "truncate",
        "flip",
        "append",
        "delete",
        "symlink_out",
        "symlink_in",
        "foreign",
        "json",
        "json_resealed",
        "traversal",
        "replace_table",
    ]
)


@st.composite
def damages(draw, files: list[str], max_size: int = 2):
    """A list of damages to a run folder holding ``files`` (paths relative to it)."""
    out = []
    for _ in range(draw(st.integers(1, max_size))):
        kind = draw(DAMAGES)
        file = draw(st.sampled_from(files))
        if kind in ("json", "json_resealed"):
            file = draw(st.sampled_from([f for f in files if f.endswith(".json")]))
            out.append((kind, file, draw(json_edits())))
        elif kind == "truncate":
            out.append((kind, file, draw(st.floats(0, 0.999))))
        elif kind == "flip":
            out.append((kind, file, draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=4))))
        elif kind == "append":
            out.append((kind, file, draw(JUNK)))
        elif kind == "traversal":
            target = draw(
                st.sampled_from(
                    [
                        "../../../../etc/passwd",
                        "/etc/passwd",
                        "../leaderboard.json",
                        "members/../manifest.json",
                        "./combiner/state.json",
                    ]
                )
            )
            out.append((kind, "model/manifest.json", (draw(st.integers(0, 10**6)), target)))
        elif kind == "replace_table":
            table = draw(st.sampled_from(["oof.parquet", "test.parquet"]))
            out.append((kind, table, draw(raw_frames(max_rows=6))))
        else:
            out.append((kind, file, None))
    return out


def _reseal(model: Path) -> None:
    """Rewrite the manifest's file digests and ``manifest.sha256`` to match the folder: an
    edit made by someone who also rewrites the digests (only a signature detects it)."""
    import hashlib

    from ensemblex.files import sha256_file

    file = model / "manifest.json"
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        for rel, entry in manifest["files"].items():
            target = model / str(rel)
            if (
                isinstance(entry, dict)
                and target.is_file()
                and target.resolve().is_relative_to(model.resolve())
            ):
                entry["sha256"] = sha256_file(target)
                entry["size"] = target.stat().st_size
        file.write_text(json.dumps(manifest, indent=2))
    if file.is_file():
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        (model / "manifest.sha256").write_text(f"{digest}  manifest.json\n")


def _manifest_paths(manifest) -> list[tuple[object, object]]:
    """(container, key) of every path-like string in a manifest (files and fold folders)."""
    spots = []
    if isinstance(manifest, dict):
        if isinstance(manifest.get("files"), dict):
            spots += [("files", k) for k in manifest["files"]]
        for m in manifest.get("members") or []:
            if isinstance(m, dict) and isinstance(m.get("folds"), list):
                spots += [(m["folds"], i) for i in range(len(m["folds"]))]
    return spots


def apply_damage(run: Path, damage: list) -> None:
    """Apply ``damage`` (from :func:`damages`) to the run folder copy ``run``."""
    for kind, rel, arg in damage:
        file = run / rel
        if kind in ("json", "json_resealed", "traversal") or file.is_file():
            pass
        else:
            continue
        if kind == "truncate":
            data = file.read_bytes()
            file.write_bytes(data[: int(len(data) * arg)])
        elif kind == "flip":
            data = bytearray(file.read_bytes())
            for pos in arg:
                if data:
                    data[pos % len(data)] ^= 1 << (pos % 8)
            file.write_bytes(bytes(data))
        elif kind == "append":
            with open(file, "ab") as fh:
                fh.write(arg or b"\x00")
        elif kind == "delete":
            file.unlink()
        elif kind == "symlink_out" and not file.is_symlink():
            outside = run.parent / f"outside-{file.name}"
            shutil.copyfile(file, outside)
            file.unlink()
            file.symlink_to(outside)
        elif kind == "symlink_in" and not (file.parent / "extra-link").is_symlink():
            (file.parent / "extra-link").symlink_to("/etc/passwd")
        elif kind == "foreign" and not file.is_symlink():
            (file.parent / "foreign.bin").write_bytes(b"not listed")
        elif kind == "replace_table":
            file.unlink(missing_ok=True)
            try:
                arg.to_parquet(file, index=False)
            except Exception:
                file.write_bytes(arg.to_csv(index=False).encode())
        elif kind in ("json", "json_resealed"):
            if not file.is_file():
                continue
            try:
                doc = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            file.write_text(json.dumps(apply_json_edit(doc, arg)))
            if kind == "json_resealed" and rel.startswith("model/"):
                _reseal(run / "model")
        elif kind == "traversal":
            try:
                manifest = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            spots = _manifest_paths(manifest)
            if not spots:
                continue
            where, key = spots[arg[0] % len(spots)]
            if where == "files":
                manifest["files"][arg[1]] = manifest["files"].pop(key)
            else:
                where[key] = arg[1]
            file.write_text(json.dumps(manifest, indent=2))
            _reseal(run / "model")


def valid_json(path: Path) -> dict:
    assert path.is_file(), f"{path} missing after exit 0"
    return json.loads(path.read_text())


def numeric_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    assert len(frame) > 0
    return frame


# ---------------------------------------------------------------- prediction tables
PRED_DAMAGES = st.sampled_from(
    [
        "none",
        "none",
        "nan",
        "inf",
        "outside",
        "string",
        "drop",
        "dup",
        "one_class",
        "one_row",
        "empty",
        "target_nan",
        "bool",
    ]
)


@st.composite
def prediction_frames(draw, max_rows: int = 12):
    """Wide prediction tables (``blend``/``evaluate``/``cascade`` input) of every task, each
    with a few damages: NaN/inf, values outside [0, 1], strings, dropped or duplicate
    columns, one class, one row, no rows. Returns ``(frame, target, id_col, members)``."""
    task = draw(st.sampled_from(["binary", "binary", "multiclass", "regression", "gaussian"]))
    n = draw(st.sampled_from([8, max_rows, 5, 3, 2]))
    members = draw(
        st.lists(
            st.sampled_from(["a", "b", "knn", "m[/]", "é中", "m:x"]) | TEXT, min_size=1, max_size=3
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cols: dict = {}
    if task == "binary":
        labels = draw(st.sampled_from([[0, 1], ["no", "yes"], [True, False], [1, 2]]))
        cols["target"] = [labels[i % 2] for i in rng.permutation(n)]
        for m in members:
            cols[m] = rng.uniform(0, 1, n).round(draw(st.sampled_from([1, 3, 17])))
    elif task == "multiclass":
        classes = draw(st.sampled_from([[0, 1, 2], ["x", "y", "z"], ["0", "1", "2", "3"]]))
        cols["target"] = [classes[i % len(classes)] for i in rng.permutation(n)]
        for m in members:
            p = rng.dirichlet(np.ones(len(classes)), n)
            for j, c in enumerate(classes):
                cols[f"{m}:{c}"] = p[:, j]
    else:
        y = rng.normal(0, 1, n) * draw(st.sampled_from([1.0, 1e6, 1e-9]))
        cols["target"] = y
        for m in members:
            if task == "gaussian":
                cols[f"{m}:mean"] = y + rng.normal(0, 1, n)
                cols[f"{m}:var"] = rng.uniform(0.1, 2, n)
            else:
                cols[m] = y + rng.normal(0, 1, n)
    if draw(st.booleans()):
        cols["row"] = np.arange(n)
    names, values = list(cols), [list(v) for v in cols.values()]
    for damage in draw(st.lists(PRED_DAMAGES, min_size=0, max_size=2)):
        j = draw(st.integers(0, len(names) - 1))
        i = draw(st.integers(0, n - 1))
        if damage in ("nan", "inf", "outside", "string", "bool") and values[j]:
            cell = {
                "nan": math.nan,
                "inf": math.inf,
                "outside": 1.5,
                "string": "n/a ",
                "bool": True,
            }[damage]
            values[j][i % len(values[j])] = cell
        elif damage == "drop" and len(names) > 1:
            del names[j], values[j]
        elif damage == "dup":
            names.append(names[j])
            values.append(list(values[j]))
        elif damage == "one_class" and values[0]:
            values[0] = [values[0][0]] * len(values[0])
        elif damage == "one_row":
            values = [v[:1] for v in values]
            n = 1
        elif damage == "empty":
            values = [v[:0] for v in values]
        elif damage == "target_nan" and values[0]:
            values[0][i % len(values[0])] = None
    return frame_of(names, values), "target", "row" if "row" in names else None, members


def choose_column(draw, right, frame: pd.DataFrame):
    """Mostly the right column name, sometimes another one, a random one or none."""
    others = [str(c) for c in frame.columns]
    pick = draw(st.sampled_from(["right", "right", "right", "other", "random", "none"]))
    if pick == "right" or (pick == "other" and not others):
        return right
    if pick == "other":
        return draw(st.sampled_from(others))
    if pick == "random":
        return draw(TEXT.filter(lambda s: s and not s.startswith("-")))
    return None


def usage_error(result) -> bool:
    """Click refused the command line itself (an option out of its declared range)."""
    return result.exit_code == 2 and ("Usage:" in result.stderr or "Invalid value" in result.stderr)
