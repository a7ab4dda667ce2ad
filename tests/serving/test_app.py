"""The HTTP server of ``ensemblex serve``, in process (FastAPI's test client)."""

import asyncio
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
from fastapi.testclient import TestClient

from ensemblex.experiment import run_experiment
from ensemblex.runs import RunFolder
from ensemblex.serving import create_app
from ensemblex.serving.batching import MicroBatcher, QueueFull


@pytest.fixture(scope="module")
def run(churn_table, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "run"
    run_experiment(churn_table.head(600), "Exited", out, members="fast", folds=2, n_jobs=1)
    rows = churn_table.iloc[600:640].drop(columns="Exited")
    return out, rows


@pytest.fixture(scope="module")
def mean_run(churn_table, tmp_path_factory):
    """A run whose combiner (the mean) uses every member, so a cascade has stages."""
    out = tmp_path_factory.mktemp("serve") / "mean"
    frame = churn_table.head(600)
    run_experiment(frame, "Exited", out, members="fast", folds=2, n_jobs=1, combiner="mean")
    return out, churn_table.iloc[600:700].drop(columns="Exited")


@pytest.fixture(scope="module")
def client(run):
    out, _ = run
    with TestClient(create_app(out, max_batch=16, max_wait_ms=1.0)) as client:
        yield client


def _records(rows: pd.DataFrame) -> list[dict]:
    return json.loads(rows.to_json(orient="records"))


def test_predict_answers_what_the_saved_model_predicts(run, client):
    out, rows = run
    expected = RunFolder(out).load_model().prediction_frame(rows)
    response = client.post("/predict?id=CustomerId", json=_records(rows))
    assert response.status_code == 200
    got = pd.DataFrame(response.json()["predictions"])
    assert list(got.columns) == ["CustomerId", "prediction", "proba_0", "proba_1"]
    np.testing.assert_array_equal(got["CustomerId"], rows["CustomerId"])
    np.testing.assert_array_equal(got["prediction"], expected["prediction"])
    np.testing.assert_allclose(got[["proba_0", "proba_1"]], expected[["proba_0", "proba_1"]])
    # a CSV body, and {"records": [...]}, give the same rows
    csv = client.post(
        "/predict", content=rows.to_csv(index=False), headers={"content-type": "text/csv"}
    )
    wrapped = client.post("/predict", json={"records": _records(rows)})
    for other in (csv, wrapped):
        assert other.status_code == 200
        frame = pd.DataFrame(other.json()["predictions"])
        np.testing.assert_allclose(frame["proba_1"], expected["proba_1"])


def test_concurrent_requests_share_batches_and_each_gets_its_own_rows(run):
    out, rows = run
    app = create_app(out, max_batch=64, max_wait_ms=20.0)
    expected = app.state.model.prediction_frame(rows)["proba_1"].to_numpy()

    async def main():
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                replies = await asyncio.gather(
                    *(http.post("/predict", json=_records(rows.iloc[[i]])) for i in range(30))
                )
                metrics = (await http.get("/metrics")).text
        return replies, metrics

    replies, metrics = asyncio.run(main())
    got = [r.json()["predictions"][0]["proba_1"] for r in replies]
    np.testing.assert_allclose(got, expected[:30])
    sizes = [line for line in metrics.splitlines() if line.startswith("ensemblex_batch_rows_count")]
    n_batches = float(sizes[0].split()[-1])
    assert n_batches < 30  # rows were batched together
    assert 'ensemblex_requests_total{endpoint="predict",status="200"} 30.0' in metrics


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b"{not json", "application/json", 400, None),
        (b"", "application/json", 400, None),
        (b'{"a": 1}', "application/json", 422, None),
        (b"[1, 2]", "application/json", 422, None),
        (b"[]", "application/json", 422, None),
        (b'[{"CreditScore": 600}]', "application/json", 422, "Age"),
        (b'[{"CreditScore": {"x": 1}}]', "application/json", 422, "CreditScore"),
        (b"a,b\n1,2\n", "text/csv", 422, "CreditScore"),
        (b"hello", "text/plain", 415, None),
    ],
)
def test_malformed_requests_get_a_4xx_naming_the_problem(client, body, content_type, status, field):
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    payload = response.json()
    assert payload["error"] and payload["field"] == field


def test_wrong_types_and_extra_columns_name_the_field(run, client):
    _, rows = run
    record = _records(rows.iloc[[0]])[0]
    bad = dict(record, Age="old")
    response = client.post("/predict", json=[bad])
    assert response.status_code == 422 and response.json()["field"] == "Age"
    extra = dict(record, Colour="red")
    response = client.post("/predict", json=[extra])
    assert response.status_code == 422 and response.json()["field"] == "Colour"
    response = client.post("/predict?id=order", json=[record])
    assert response.status_code == 422 and response.json()["field"] == "order"
    assert client.get("/health").status_code == 200  # still up


def test_body_limit(run):
    out, rows = run
    with TestClient(create_app(out, max_body_bytes=200)) as client:
        response = client.post("/predict", json=_records(rows))
        assert response.status_code == 413 and "limit" in response.json()["error"]


def test_health_metadata_and_metrics(run, client):
    out, _ = run
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    model = RunFolder(out).load_model()
    digest = (RunFolder(out).model_dir / "manifest.sha256").read_text().split()[0]
    assert meta["sha256"] == digest and meta["task"] == "binary" and meta["classes"] == [0, 1]
    assert meta["members"] == [m.name for m in model.fitted_members_]
    assert meta["schema"]["numeric"] == model.schema_.numeric
    assert "scikit-learn" in meta["versions"]
    text = client.get("/metrics").text
    for name in (
        "ensemblex_requests_total",
        "ensemblex_request_seconds_bucket",
        "ensemblex_batch_rows_bucket",
        "ensemblex_errors_total",
    ):
        assert name in text


def test_cascade_exits_early_and_counts_its_stages(mean_run):
    out, rows = mean_run
    with TestClient(create_app(out, cascade=True)) as client:
        cascade = client.get("/metadata").json()["cascade"]
        # null: no threshold kept the accuracy, so every row runs the full ensemble
        assert cascade["order"] and (cascade["threshold"] is None or cascade["threshold"] <= 1)
        response = client.post("/predict", json=_records(rows))
        assert response.status_code == 200
        proba = pd.DataFrame(response.json()["predictions"])["proba_1"]
        assert proba.between(0, 1).all()
        text = client.get("/metrics").text
        exits = [
            line for line in text.splitlines() if line.startswith("ensemblex_cascade_exits_total")
        ]
        assert sum(float(line.split()[-1]) for line in exits) == len(rows)


def test_a_model_that_fails_verification_is_refused(run, tmp_path):
    import shutil

    out, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    member_file = next((copy / "model" / "members").rglob("member.json"))
    member_file.write_text(member_file.read_text() + " ")
    with pytest.raises(ValueError, match="changed since it was saved"):
        create_app(copy)


def test_a_full_queue_refuses_at_once():
    async def main():
        release = asyncio.Event()
        loop = asyncio.get_running_loop()

        def slow(parts):
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
            return parts, {}

        batcher = MicroBatcher(slow, max_batch=1, max_queue=1)
        await batcher.start()
        first = asyncio.create_task(batcher.submit("a", 1))
        await asyncio.sleep(0.05)  # the worker holds it, in the model
        second = asyncio.create_task(batcher.submit("b", 1))  # waits in the queue
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit("c", 1)
        release.set()
        answers = await asyncio.gather(first, second)
        await batcher.stop()
        return answers

    assert asyncio.run(main()) == ["a", "b"]


def test_requests_arriving_while_the_model_runs_form_the_next_batch():
    async def main():
        batches = []

        def model(parts):
            batches.append(list(parts))
            import time

            time.sleep(0.05)
            return [p.upper() for p in parts], {}

        batcher = MicroBatcher(model, max_batch=3)
        await batcher.start()
        first = asyncio.create_task(batcher.submit("a", 1))
        await asyncio.sleep(0.01)  # "a" runs alone; these queue behind it
        rest = [asyncio.create_task(batcher.submit(x, 1)) for x in "bcde"]
        answers = await asyncio.gather(first, *rest)
        await batcher.stop()
        return answers, batches

    answers, batches = asyncio.run(main())
    assert answers == ["A", "B", "C", "D", "E"]
    assert batches == [["a"], ["b", "c", "d"], ["e"]]  # at most 3 rows per batch


def test_the_cascade_runner_answers_as_the_offline_cascade(mean_run):
    from ensemblex.serving.runner import CascadeRunner, fit_serving_cascade

    out, rows = mean_run
    model = RunFolder(out).load_model()
    cascade = fit_serving_cascade(out, model)
    cascade.threshold_ = 0.8  # exits on confident rows, whatever the run chose
    frame, info = CascadeRunner(model, cascade).predict(rows)
    offline = cascade.predict(model.member_predictions(rows))
    last = len(cascade.order_) - 1
    early = offline.exit_stage < last
    assert early.any() and (~early).any()
    proba = frame[["proba_0", "proba_1"]].to_numpy()
    np.testing.assert_allclose(proba[early], offline.proba[early], rtol=1e-12)
    # rows the cheap stages leave open get the deployed ensemble's answer
    full = model.prediction_frame(rows)[["proba_0", "proba_1"]].to_numpy()
    np.testing.assert_allclose(proba[~early], full[~early], rtol=1e-12)
    expected = np.bincount(offline.exit_stage[early], minlength=last + 2)
    expected[-1] = (~early).sum()
    np.testing.assert_array_equal(info["exit_stages"], expected)
