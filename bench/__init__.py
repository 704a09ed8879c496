"""Benchmark scripts: each runs as ``python bench/<name>.py`` and prints its figures (see the README)."""
