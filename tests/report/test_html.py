import base64
import io
import re
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pytest
from typer.testing import CliRunner

from ensemblex.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(churn_table, tmp_path_factory):
    data = tmp_path_factory.mktemp("data") / "churn.csv"
    churn_table.head(900).to_csv(data, index=False)
    out = tmp_path_factory.mktemp("run") / "out"
    result = runner.invoke(
        app,
        [
            "run",
            str(data),
            "--target",
            "Exited",
            "--zoo",
            "fast",
            "--folds",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(b64)
        for b64 in re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_report_is_self_contained_with_every_plot(run_dir):
    page = (run_dir / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # works offline
    for heading in (
        "Data",
        "Leaderboard",
        "Member correlation",
        "Member score vs diversity",
        "Reliability diagram",
        "Risk-coverage",
        "Early-exit cascade",
    ):
        assert f"<h2>{heading}</h2>" in page
    images = _images(page)
    assert len(images) == page.count("<img ")
    assert len(images) >= 6  # weights, heatmap, scatter, reliability, risk-coverage, cascade
    for png in images:
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        _assert_drawn(pixels)


def _assert_drawn(pixels):
    """A plot, not a blank or one-colour image: many colours, and ink on a share of it."""
    rgb = pixels[..., :3].reshape(-1, 3)
    colours = np.unique(np.round(rgb * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours"
    background = np.all(rgb > 0.97, axis=1)  # white (figure background)
    assert 0.01 < 1 - background.mean() < 0.95, f"ink on {1 - background.mean():.1%}"


def test_the_blank_image_check_catches_blank_images():
    import matplotlib.pyplot as plt

    for blank in (np.ones((200, 300, 4)), np.zeros((200, 300, 4))):
        with pytest.raises(AssertionError):
            _assert_drawn(blank)
    figure = plt.figure(figsize=(4, 3))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    with pytest.raises(AssertionError):
        _assert_drawn(mpimg.imread(io.BytesIO(buffer.getvalue()), format="png"))


_PAYLOAD = "<script>alert(1)</script>"


def _with_payload(run_dir, tmp_path, fields):
    """A copy of the run whose leaderboard.json has a script in ``fields``."""
    import json

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("work"))
    summary = json.loads((copy / "leaderboard.json").read_text())
    combiner = next(r for r in summary["leaderboard"] if r["kind"] == "combiner")
    for field in fields:
        if field in ("kind", "model"):
            combiner[field] = f"{field}{_PAYLOAD}"
        else:
            summary[field] = f"{field}{_PAYLOAD}"
    (copy / "leaderboard.json").write_text(json.dumps(summary))
    (copy / "report.html").unlink()
    return copy


def test_leaderboard_text_is_escaped_in_the_report(run_dir, tmp_path):
    from ensemblex.report import build_report

    fields = ["zoo", "metric", "chosen", "model"]
    page = build_report(_with_payload(run_dir, tmp_path, fields)).read_text()
    assert "<script" not in page.lower()
    for field in fields:
        assert f"{field}&lt;script&gt;alert(1)&lt;/script&gt;" in page, field


@pytest.mark.parametrize("field", ["task", "kind"])
def test_a_script_as_the_task_or_a_row_kind_is_refused(run_dir, tmp_path, field):
    """Fields with a fixed set of values are checked against it before anything is shown."""
    from ensemblex.report import build_report

    copy = _with_payload(run_dir, tmp_path, [field])
    with pytest.raises(ValueError, match=f"'{field}'|{field}"):
        build_report(copy)
    assert not (copy / "report.html").exists()


def test_report_command_rebuilds_it(run_dir):
    (run_dir / "report.html").unlink()
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file()
    result = runner.invoke(app, ["report", str(run_dir / "model")])
    assert result.exit_code == 2 and "no leaderboard.json" in result.output


_CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.title = 'IMAGES ' + imgs.length + ' BROKEN ' + broken;
});</script>"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium to run the browser test"
    page = (run_dir / "report.html").read_text().replace("</body>", _CHECK + "</body>")
    (tmp_path / "page.html").write_text(page)
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (tmp_path / "page.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = re.search(r"<title>IMAGES (\d+) BROKEN (\d+)</title>", dom)
    assert found, dom[:500]
    assert int(found.group(1)) == len(_images(page)) >= 6
    assert int(found.group(2)) == 0


def test_report_with_out_of_distribution_rows(run_dir, churn_table, tmp_path):
    rng = np.random.default_rng(0)
    ood = churn_table.head(200).drop(columns="Exited").copy()
    for col in ("CreditScore", "Age", "Balance", "EstimatedSalary"):
        ood[col] = rng.uniform(0, 3 * churn_table[col].max(), len(ood)).astype(ood[col].dtype)
    ood.to_csv(tmp_path / "ood.csv", index=False)
    result = runner.invoke(app, ["report", str(run_dir), "--ood", str(tmp_path / "ood.csv")])
    assert result.exit_code == 0, result.output
    page = (run_dir / "report.html").read_text()
    assert "<h2>Out-of-distribution scores</h2>" in page
    assert "200 out-of-distribution rows" in page
    ood.drop(columns="Age").to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(app, ["report", str(run_dir), "--ood", str(tmp_path / "bad.csv")])
    assert result.exit_code == 2 and "missing columns ['Age']" in result.output


def _rows(page: str, section: str) -> list[list[str]]:
    """The cells of each row of the first table after ``<h2>section</h2>``."""
    table = page.split(f"<h2>{section}</h2>", 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in table.split("<tr")[1:]]


def test_report_has_a_data_section(run_dir):
    import json

    summary = json.loads((run_dir / "leaderboard.json").read_text())
    page = (run_dir / "report.html").read_text()
    facts = {row[0]: row[1] for row in _rows(page, "Data")}
    assert facts["source table"].endswith("churn.csv")
    assert facts["target"] == "Exited" and facts["task"] == "binary"
    assert facts["rows"] == (
        f"{summary['rows']['train']:,} train, {summary['rows']['test']:,} held-out test"
    )
    numeric, categorical = summary["columns"]["numeric"], summary["columns"]["categorical"]
    assert facts[f"numeric columns ({len(numeric)})"] == ", ".join(numeric)
    assert facts[f"categorical columns ({len(categorical)})"] == "Geography, Gender"
    dropped = summary["dropped_columns"]
    assert set(dropped) >= {"RowNumber", "CustomerId"}
    assert facts[f"dropped ID-like columns ({len(dropped)})"] == ", ".join(dropped)


def test_data_section_escapes_names_and_tolerates_missing_entries(run_dir, tmp_path):
    import json

    from ensemblex.report import build_report

    copy = _with_payload(run_dir, tmp_path, ["data"])
    summary = json.loads((copy / "leaderboard.json").read_text())
    summary["columns"]["numeric"][0] = f"numeric{_PAYLOAD}"
    summary["columns"]["categorical"] = [f"categorical{_PAYLOAD}"]
    summary["dropped_columns"] = [f"dropped{_PAYLOAD}"]
    (copy / "leaderboard.json").write_text(json.dumps(summary))
    page = build_report(copy).read_text()
    assert "<script" not in page.lower()
    for field in ("data", "numeric", "categorical", "dropped"):
        assert f"{field}&lt;script&gt;alert(1)&lt;/script&gt;" in page, field
    # an older or edited leaderboard.json without these entries: left out, no error
    for key in ("data", "rows", "columns", "dropped_columns"):
        summary.pop(key)
    (copy / "leaderboard.json").write_text(json.dumps(summary))
    facts = {row[0]: row[1] for row in _rows(build_report(copy).read_text(), "Data")}
    assert facts == {"target": "Exited", "task": "binary"}


def test_leaderboard_shows_predict_time_and_scores_by_significant_digits(run_dir):
    import json

    from ensemblex.report.numbers import format_number

    summary = json.loads((run_dir / "leaderboard.json").read_text())
    rows = _rows((run_dir / "report.html").read_text(), "Leaderboard")
    assert rows[0][-1] == "predict ms / 1k rows"
    by_model = {row[0]: row for row in rows[1:]}
    for r in summary["leaderboard"]:
        cells = by_model[r["model"]]
        assert cells[2] == format_number(r["cv_score"])
        assert cells[3] == format_number(r["test_score"])
        if r["kind"] == "member":
            per_1k_ms = float(cells[5])
            assert per_1k_ms == pytest.approx(r["predict_seconds_per_row"] * 1e6, rel=5e-3)
        else:
            assert cells[5] == ""


def test_cascade_plot_shows_the_choice_where_it_lands_on_test_rows(run_dir, monkeypatch):
    """The chosen threshold is drawn on the OOF front it was chosen on and at its test
    position, which is what ``ensemblex cascade`` reports for the run's test rows."""
    from ensemblex.cascade_choice import choose_cascade
    from ensemblex.report import build_report, plots

    seen = {}
    draw = plots.cascade_front_plot

    def spy(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        return draw(*args, **kwargs)

    monkeypatch.setattr(plots, "cascade_front_plot", spy)
    page = build_report(run_dir).read_text()
    front, chosen = seen["args"]
    kwargs = seen["kwargs"]
    expected = choose_cascade(run_dir)
    assert vars(chosen) == pytest.approx(expected["chosen"])
    test = kwargs["test_chosen"]
    assert test.threshold == chosen.threshold
    assert test.accuracy == pytest.approx(expected["test"]["accuracy"], abs=1e-12)
    assert test.relative_cost == pytest.approx(expected["test"]["relative_cost"], rel=1e-9)
    assert kwargs["test_full_accuracy"] == pytest.approx(expected["test"]["full_accuracy"])
    assert [p.threshold for p in kwargs["test_front"]] == [p.threshold for p in front]
    assert "The threshold is chosen on the out-of-fold rows" in page
    assert f"test accuracy {test.accuracy:.4f}" in page
