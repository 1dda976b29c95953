"""Synthetic dark / light images written as an ImageFolder tree: ``<split>/<class>/*.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from visionzoo.registry import register_generator

CLASS_NAMES = ("dark", "light")
LEVELS = {"dark": (20, 100), "light": (150, 235)}  # range of each class's mean grey level


@register_generator("toy_dark_light")
def write_dark_light(
    out_dir: Path, *, num_train: int = 32, num_val: int = 16, size: int = 32, seed: int = 0
) -> None:
    """Half dark, half light RGB images: a random mean level per image plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            name = CLASS_NAMES[i % 2]
            level = rng.uniform(*LEVELS[name], size=3)
            pixels = np.clip(level + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            folder = out_dir / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
