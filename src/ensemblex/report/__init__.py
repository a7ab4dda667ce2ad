"""Human-readable reports: one self-contained HTML file per run."""

from ensemblex.report.html import build_report

__all__ = ["build_report"]
