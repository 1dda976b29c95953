"""Shapes on textured backgrounds, written as image PNGs + class-id mask PNGs (mask_folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from visionzoo.core.synthetic import write_split
from visionzoo.registry import register_generator

CLASS_NAMES = ("background", "circle", "rectangle", "triangle")


def _draw_shape(draw: ImageDraw.ImageDraw, cls: int, box: tuple[int, ...], fill) -> None:
    x0, y0, x1, y1 = box
    if cls == 1:
        draw.ellipse(box, fill=fill)
    elif cls == 2:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def render_shapes(
    rng: np.random.Generator, size: int, max_shapes: int
) -> tuple[Image.Image, Image.Image]:
    """One image and its mask: a smooth random-colour background with noise, then 1..max_shapes
    shapes of random class, colour and size; later shapes occlude earlier ones in both."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    bg = c0 + (c1 - c0) * (t - t.min()) / (np.ptp(t) + 1e-6)
    bg = np.clip(bg + rng.normal(0, 12, bg.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(bg)
    mask = Image.new("L", (size, size), 0)
    draw_i, draw_m = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(rng.integers(1, max_shapes + 1)):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        s = int(rng.integers(size // 6, size // 2.5))
        x0, y0 = (int(v) for v in rng.integers(0, size - s, 2))
        box = (x0, y0, x0 + s, y0 + s)
        _draw_shape(draw_i, cls, box, tuple(int(v) for v in rng.integers(0, 256, 3)))
        _draw_shape(draw_m, cls, box, cls)
    return image, mask


@register_generator("segmentation_shapes")
def write_segmentation_shapes(
    out_dir: Path,
    *,
    num_train: int = 200,
    num_val: int = 50,
    size: int = 128,
    max_shapes: int = 4,
    seed: int = 0,
) -> None:
    """Write ``images/*.png``, ``masks/*.png`` (class ids) and ``splits/{train,val}.txt``."""
    rng = np.random.default_rng(seed)
    (out_dir / "images").mkdir(parents=True)
    (out_dir / "masks").mkdir()
    stems = [f"{i:05d}" for i in range(num_train + num_val)]
    for stem in stems:
        image, mask = render_shapes(rng, size, max_shapes)
        image.save(out_dir / "images" / f"{stem}.png")
        mask.save(out_dir / "masks" / f"{stem}.png")
    write_split(out_dir, "train", stems[:num_train])
    write_split(out_dir, "val", stems[num_train:])
    (out_dir / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
