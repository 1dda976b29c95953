#!/usr/bin/env python
"""Reproducible speed and quality benchmarks for visionzoo: ``python scripts/benchmark.py
<suite> [options]`` (``--help`` lists the suites and their options). The suites live in
``visionzoo.bench``."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from visionzoo.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
