"""A toy task family defined outside the package: dark vs light image classification.

It exists to prove the plug-in contract: with ``VISIONZOO_PLUGINS=toy_family`` (and ``tests/``
on ``PYTHONPATH``) ``train.py task=toy``, ``eval.py`` and ``predict.py`` run it although no
file of ``visionzoo`` or ``configs/`` names it. Importing it registers the family, its two
models (a 2-layer CNN and a metric-only brightness threshold) and its synthetic dataset.
"""

from pathlib import Path

from toy_family import models, synthetic  # noqa: F401  (register)
from toy_family.module import ToyModule
from visionzoo.family import Family
from visionzoo.registry import register_family

FAMILY = register_family(
    Family(
        name="toy",
        module=ToyModule,
        default_model="toy_cnn",
        default_data="synthetic_toy",
        description="image classification (test plug-in): dark vs light, accuracy",
        config_dir=Path(__file__).resolve().parent / "configs",
    )
)
