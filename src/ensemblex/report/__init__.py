"""Human-readable reports: one self-contained HTML file per run."""

__all__ = ["build_report"]


def __getattr__(name):
    # Imported on first use: the terminal commands import ``report.numbers`` and should not
    # pay for matplotlib, which the HTML report (and only it) needs.
    if name == "build_report":
        from ensemblex.report.html import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
