"""``ensemblex serve`` as a process: starts, answers valid and malformed requests, stops on
SIGTERM; refuses to start on a damaged model."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ensemblex.experiment import run_experiment


@pytest.fixture(scope="module")
def run(churn_table, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-process") / "run"
    run_experiment(churn_table.head(500), "Exited", out, members="fast", folds=2, n_jobs=1)
    return out, churn_table.iloc[500:505].drop(columns="Exited")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: bytes | None = None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_starts_answers_and_stops(run):
    out, rows = run
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ensemblex", "serve", str(out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _request(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "the server did not start in 90 s"
            time.sleep(0.2)
        records = rows.to_json(orient="records").encode()
        status, body = _request(f"{base}/predict?id=CustomerId", records)
        assert status == 200 and len(body["predictions"]) == len(rows)
        assert body["predictions"][0]["CustomerId"] == int(rows["CustomerId"].iloc[0])
        for bad, kind in (
            (b"{oops", "application/json"),
            (b'[{"Age": 3}]', "application/json"),
            (b"x", "text/plain"),
        ):
            status, body = _request(f"{base}/predict", bad, kind)
            assert 400 <= status < 500 and body["error"]
        assert _request(f"{base}/health")[0] == 200  # still up
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert code == 0, server.stderr.read()


def test_serve_refuses_a_damaged_model(run, tmp_path):
    out, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "model" / "manifest.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "ensemblex", "serve", str(copy), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "does not match manifest.sha256" in done.stderr
