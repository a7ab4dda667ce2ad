"""The fuzz suite's Hypothesis profile (``ensemblex-fuzz``: no deadline, derandomized) and
its shared fixtures; the strategies and the property live in ``fuzz_support.py``."""

from fuzz_support import OUTCOMES, cheap_run, churn_run, scratch  # noqa: F401  (fixtures)


def pytest_terminal_summary(terminalreporter):
    """Generated cases per command and how they ended (exit 0 / exit 2 / click usage)."""
    if OUTCOMES:
        terminalreporter.write_sep("-", "fuzz cases per command")
        for command, counts in sorted(OUTCOMES.items()):
            total = sum(counts.values())
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
            terminalreporter.write_line(f"{command}: {total} cases ({detail})")
