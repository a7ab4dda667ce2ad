"""`ensemblex serve` under load, against a naive server and `mlflow models serve`.

    .venv/bin/python bench/serve.py [--seconds 60] [--readme]

The model: the bundled churn table's default ensemble, `ensemblex run --refit-full`
(bench/.cache/serve-run, built on first use). Servers, each its own process on 127.0.0.1:

- `ensemblex serve` (micro-batching), and with `--cascade`;
- a naive server: the same model behind FastAPI, one `prediction_frame` per request, no
  batching (`python bench/serve.py --naive RUN PORT`);
- `mlflow models serve` of the same model saved as an ensemblex pyfunc (when mlflow is
  installed).

A load generator (keep-alive HTTP/1.1 connections on asyncio streams, in this process)
sends single-row JSON requests (rows of the churn table) at concurrency 1, 16 and 64 for
`--seconds` each (and at most 100,000 requests), then 1,000 malformed requests to
`ensemblex serve`. It prints p50/p99 latency, rows/s and errors, writes
bench/results/serve.json and, with --readme, the README table between
`<!-- serve:start -->` markers. Client and servers share this machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
RUN = CACHE / "serve-run"
MLFLOW_MODEL = CACHE / "serve-mlflow"
RESULTS = ROOT / "bench" / "results" / "serve.json"
PYTHON = ROOT / ".venv" / "bin" / "python"
CLI = ROOT / ".venv" / "bin" / "ensemblex"
DATA = ROOT / "src" / "ensemblex" / "data" / "churn_modelling.csv"
CONCURRENCY = (1, 16, 64)
MAX_REQUESTS = 100_000


# ---------------------------------------------------------------- the naive server
def naive_app(run_dir: str):
    """One model call per request: what serving looks like without batching."""
    import pandas as pd
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from ensemblex.ensemble import Ensemble
    from ensemblex.runs import model_dir

    # FastAPI resolves the endpoint's (string) annotation among this module's globals
    globals()["Request"] = Request
    model = Ensemble.load(model_dir(run_dir))
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request):
        records = json.loads(await request.body())
        try:
            frame = model.prediction_frame(pd.DataFrame.from_records(records))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"predictions": json.loads(frame.to_json(orient="records"))})

    return app


def serve_naive(run_dir: str, port: int) -> None:
    import uvicorn

    uvicorn.run(naive_app(run_dir), host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, args: list[str], port: int, path: str, ready: str):
        self.name, self.args, self.port, self.path, self.ready = name, args, port, path, ready
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def __enter__(self):
        import httpx

        env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `ensemblex serve` sets it: fair
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.ready}").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start in 180 s")

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def servers() -> list[Server]:
    found = []
    port = free_port()
    found.append(
        Server(
            "ensemblex serve",
            [str(CLI), "serve", str(RUN), "--port", str(port)],
            port,
            "/predict",
            "/health",
        )
    )
    port = free_port()
    found.append(
        Server(
            "ensemblex serve --cascade",
            [str(CLI), "serve", str(RUN), "--port", str(port), "--cascade"],
            port,
            "/predict",
            "/health",
        )
    )
    port = free_port()
    found.append(
        Server(
            "naive (one predict per request)",
            [str(PYTHON), __file__, "--naive", str(RUN), str(port)],
            port,
            "/predict",
            "/health",
        )
    )
    if MLFLOW_MODEL.exists():
        port = free_port()
        mlflow = ROOT / ".venv" / "bin" / "mlflow"
        found.append(
            Server(
                "mlflow models serve",
                [
                    str(mlflow),
                    "models",
                    "serve",
                    "-m",
                    str(MLFLOW_MODEL),
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                port,
                "/invocations",
                "/ping",
            )
        )
    return found


# ---------------------------------------------------------------- load
def bodies(server: Server, records: list[dict]) -> list[bytes]:
    if server.path == "/invocations":
        return [json.dumps({"dataframe_records": [r]}).encode() for r in records]
    return [json.dumps([r]).encode() for r in records]


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the lightest client there is,
    so that at concurrency 64 the load generator, which shares the cores with the server,
    is not what is measured (httpx's pool slowed itself down there)."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1])

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def load(server: Server, payloads: list[bytes], concurrency: int, seconds: float) -> dict:
    latencies, errors, sent = [], 0, 0
    end = time.perf_counter() + seconds

    async def worker(k: int):
        nonlocal errors, sent
        connection = Connection(server.port)
        i = k
        while time.perf_counter() < end and sent < MAX_REQUESTS:
            sent += 1
            start = time.perf_counter()
            try:
                ok = await connection.post(server.path, payloads[i % len(payloads)]) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                ok = False
                await connection.close()
            latencies.append(time.perf_counter() - start)
            errors += not ok
            i += concurrency
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": int(errors),
        "rows_per_s": (len(latencies) - errors) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


async def malformed(server: Server, valid: dict, n: int = 1000) -> dict:
    import httpx

    kinds = [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b'{"rows": 1}', "application/json"),
        (json.dumps([{k: v for k, v in valid.items() if k != "Age"}]).encode(), "application/json"),
        (json.dumps([dict(valid, Age="old")]).encode(), "application/json"),
        (json.dumps([dict(valid, Colour="red")]).encode(), "application/json"),
        (json.dumps([dict(valid, Age={"x": 1})]).encode(), "application/json"),
        (b"a,b\n1,2\n", "text/csv"),
        (b"hello", "text/plain"),
        (b"[" + b'{"a": 1},' * 2_000_000 + b"{}]", "application/json"),  # over the size limit
    ]
    answered = with_message = 0
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(n):
            body, kind = kinds[i % len(kinds)]
            reply = await client.post(server.url, content=body, headers={"Content-Type": kind})
            if 400 <= reply.status_code < 500:
                answered += 1
                with_message += bool(reply.json().get("error"))
        alive = (await client.get(f"http://127.0.0.1:{server.port}/health")).status_code == 200
    return {"sent": n, "4xx": answered, "with_message": with_message, "alive_after": alive}


# ---------------------------------------------------------------- setup and report
def ensure_model() -> None:
    if not (RUN / "leaderboard.json").exists():
        print(f"building {RUN} (ensemblex run --refit-full)", flush=True)
        subprocess.run([str(CLI), "run", "--refit-full", "--out", str(RUN)], check=True)
    if not MLFLOW_MODEL.exists():
        try:
            from ensemblex.mlflow import save_model

            save_model(RUN, MLFLOW_MODEL)
        except ImportError as exc:
            print(f"mlflow is not installed; skipping mlflow models serve ({exc})")


def table(result: dict) -> str:
    rows = [
        "| server | concurrency | p50 ms | p99 ms | rows/s | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in result["servers"].items():
        for r in runs:
            rows.append(
                f"| {name} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['rows_per_s']:.0f} | {r['errors']} |"
            )
    m = result["malformed"]
    naive = {r["concurrency"]: r for r in result["servers"]["naive (one predict per request)"]}
    ours = {r["concurrency"]: r for r in result["servers"]["ensemblex serve"]}
    ratio = ours[64]["rows_per_s"] / naive[64]["rows_per_s"]
    rows += [
        "",
        f"Single-row requests, {result['seconds']:.0f} s per row of the table, client and "
        f"server on the same {result['cpus']} cores. At concurrency 64 `ensemblex serve` "
        f"answers {ratio:.1f}x the naive server's rows/s. Malformed requests: {m['4xx']} of "
        f"{m['sent']} answered 4xx, {m['with_message']} with a message; the server "
        f"{'stayed up' if m['alive_after'] else 'went down'}.",
    ]
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--naive"]:
        serve_naive(argv[1], int(argv[2]))
        return
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 60.0
    ensure_model()
    import pandas as pd

    frame = pd.read_csv(DATA).drop(columns="Exited").sample(2000, random_state=0)
    records = json.loads(frame.to_json(orient="records"))
    result = {"seconds": seconds, "cpus": os.cpu_count(), "servers": {}}
    for server in servers():
        with server:
            payloads = bodies(server, records)
            runs = []
            for c in CONCURRENCY:
                asyncio.run(load(server, payloads, c, min(2.0, seconds)))  # warm up
                runs.append(asyncio.run(load(server, payloads, c, seconds)))
                print(server.name, runs[-1], flush=True)
            result["servers"][server.name] = runs
            if server.name == "ensemblex serve":
                result["malformed"] = asyncio.run(malformed(server, records[0]))
                print("malformed", result["malformed"], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    text = table(result)
    print(text)
    if "--readme" in argv:
        from readme import replace_section

        replace_section("serve", text)


if __name__ == "__main__":
    main(sys.argv[1:])
