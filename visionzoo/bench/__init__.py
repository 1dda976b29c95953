"""Benchmarks: ``python scripts/benchmark.py <suite>`` runs ``visionzoo.bench.cli.main``.

``harness`` times things and holds the plain PyTorch loop, ``report`` writes the results,
``overhead`` and ``data`` are the suites every family takes part in (``cases`` says how a family
takes part); each family's ``bench`` module adds its reference step and comparison suite.
"""
