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
