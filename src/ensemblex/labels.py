"""Progress labels that the library's phases report and the CLI's bars recognise (a module
of its own, so that the CLI starts without importing the library's numerics)."""

NESTED_CV = "nested CV"  # the combiner candidates' phase (AutoCombiner)
REFIT_FULL = "refit on all rows"  # members refit once on all training rows (refit_full)
