"""Benchmarks: daskless against dask's own schedulers, measured in the same run.

Benchmarks are not tests: they write JSON and a markdown table under ``benchmarks/results``.
"""
