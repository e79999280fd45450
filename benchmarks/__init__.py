"""jaxprop's benchmarks and baselines (run as scripts, never collected by pytest)."""
