"""Benchmark engine: suites, runner, metrics report, plots."""
