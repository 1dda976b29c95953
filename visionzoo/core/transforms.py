"""albumentations pipelines per family."""

from __future__ import annotations

import albumentations as A


def seed_pipeline(pipeline: A.Compose, seed: int) -> None:
    """Make ``pipeline``'s next call a pure function of ``seed``.

    ``Compose.set_random_seed`` hands every child transform its own generator seeded with the
    *same* value, so transforms with equal probabilities (``HorizontalFlip(p=0.5)`` and
    ``VerticalFlip(p=0.5)``) would fire all together or not at all. Re-pointing every child at
    the one generator of the ``Compose`` keeps the draws independent and still reproducible.
    """
    pipeline.set_random_seed(seed)
    pipeline.set_random_state(pipeline.random_generator, pipeline.py_random)
