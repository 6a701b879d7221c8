"""Benchmarks (not tests): ``python -m bench.throughput``, ``python -m bench.decision``.

Results and how to read them: docs/BENCHMARKS.md.
"""
