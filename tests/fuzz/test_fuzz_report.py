"""Fuzzing ``ensemblex report``: damaged run folders and out-of-distribution tables."""

from __future__ import annotations

import pytest
from fuzz_support import (
    FORMATS,
    JUNK,
    apply_damage,
    case_dir,
    check_outcome,
    copy_run,
    damages,
    fuzz,
    invoke,
    raw_frames,
    run_files,
    snapshot,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module", autouse=True)
def figures_built_not_drawn():
    """Every figure is built from the damaged folder's data, but not rasterised: drawing
    costs ~0.2 s a figure and is the same code for every case (tests/report draws it, and
    checks the page in a browser)."""
    from ensemblex.report import plots

    def built(fig) -> str:
        plots.plt.close(fig)
        return _ONE_PIXEL_PNG

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "_png", built)
        yield


_ONE_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
    "kgAAAABJRU5ErkJggg=="
)


@fuzz(510)
@given(data=st.data())
def test_report_damaged_run_folders(scratch, cheap_run, data):
    """The report is rebuilt (exit 0) or refused with nothing written (exit 2)."""
    files = [f for f in run_files(cheap_run) if f != "report.html"]
    damage = data.draw(damages(files))
    with case_dir(scratch) as folder:
        run = copy_run(cheap_run, folder)
        (run / "report.html").unlink()
        apply_damage(run, damage)
        before = snapshot(run)
        args = ["report", run]
        if data.draw(st.integers(0, 6)) == 0:
            frame = data.draw(raw_frames(max_rows=4))
            args += [
                "--ood",
                write_table(frame, folder, "ood", data.draw(FORMATS), data.draw(JUNK)),
            ]
        result = invoke(args)

        def valid():
            page = (run / "report.html").read_text()
            assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>")
            assert "<script" not in page

        def unchanged():
            assert snapshot(run) == before

        check_outcome(result, [run / "report.html"], valid, unchanged)
