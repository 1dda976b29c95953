"""Filled circles, squares and triangles on textured backgrounds, written as JPEGs + COCO JSON.

Shapes are crisp (no anti-aliasing), in random saturated colours on a low-saturation textured
background, and overlap little: two objects' boxes share at most 25 % of the smaller one (so
IoU < 0.25 too), which keeps every shape mostly visible. Colour is independent of class, so a
detector has to learn shape; ~5 % of images are negatives. Box = tight box of the drawn shape.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.ops import box_iou

from visionzoo.detection.formats import read_coco, write_coco
from visionzoo.detection.records import DetectionRecord, DetectionSource
from visionzoo.registry import register_generator

CLASS_NAMES = ("circle", "square", "triangle")
CATEGORY_IDS = (1, 2, 3)
MAX_OVERLAP = 0.25  # largest intersection between two objects, as a fraction of the smaller
NEGATIVE_FRACTION = 0.05  # images with no objects
PLACEMENT_TRIES = 50  # attempts to place one object before giving up on it


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey-ish base + a smooth low-frequency texture + pixel noise, ``(size, size, 3)`` float."""
    base = rng.uniform(60, 200) + rng.uniform(-20, 20, 3)
    coarse = rng.uniform(-35, 35, (6, 6)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    return base + texture[..., None] + rng.normal(0, 8, (size, size, 3))


def _shape_mask(cls: int, x0: int, y0: int, s: int, size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    x1, y1 = x0 + s - 1, y0 + s - 1
    if cls == 0:
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif cls == 1:
        draw.rectangle((x0, y0, x1, y1), fill=255)
    else:
        draw.polygon([(x0 + (s - 1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    return mask


def _overlap(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Intersection of ``box`` [1, 4] with each of ``others`` [n, 4] over the smaller area."""
    a = (box[:, 2:] - box[:, :2]).prod(1)
    b = (others[:, 2:] - others[:, :2]).prod(1)
    iou = box_iou(box, others)[0]
    inter = iou * (a + b) / (1 + iou)  # from IoU = inter / (a + b - inter)
    return inter / torch.minimum(a, b)


def _saturated_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def render_image(
    rng: np.random.Generator, size: int, num_objects: int, min_box: int, max_box: int
) -> tuple[Image.Image, np.ndarray, np.ndarray, np.ndarray]:
    """One image with up to ``num_objects`` shapes → (image, xyxy boxes, labels, pixel areas)."""
    image = Image.fromarray(np.clip(_background(rng, size), 0, 255).astype(np.uint8))
    squares = torch.zeros((0, 4))
    boxes, labels, areas = [], [], []
    for _ in range(num_objects):
        cls = int(rng.integers(len(CLASS_NAMES)))
        s = int(rng.integers(min_box, max_box + 1))
        for _ in range(PLACEMENT_TRIES):
            x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, 2))
            square = torch.tensor([[x0, y0, x0 + s, y0 + s]], dtype=torch.float32)
            if not len(squares) or _overlap(square, squares).max() < MAX_OVERLAP:
                break
        else:
            continue
        squares = torch.cat([squares, square])
        mask = _shape_mask(cls, x0, y0, s, size)
        image.paste(_saturated_colour(rng), mask=mask)
        boxes.append(mask.getbbox())  # (left, top, right, bottom), right/bottom exclusive = xyxy
        labels.append(cls)
        areas.append(np.count_nonzero(np.asarray(mask)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (size, size, 3))
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return (
        image,
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(areas, dtype=np.float32),
    )


@register_generator("detection_shapes")
def write_detection_shapes(
    out_dir: Path,
    *,
    num_train: int = 160,
    num_val: int = 40,
    size: int = 256,
    max_objects: int = 6,
    min_box: int = 24,
    max_box: int = 96,
    seed: int = 0,
) -> None:
    """Write ``images/{train,val}/*.jpg`` (quality 95) and ``annotations/instances_{train,val}
    .json`` (COCO, category ids 1, 2, 3 = circle, square, triangle)."""
    if not 0 < min_box <= max_box <= size:
        raise ValueError(f"need 0 < min_box <= max_box <= size, got {min_box}, {max_box}, {size}")
    rng = np.random.default_rng(seed)
    for split, n in (("train", num_train), ("val", num_val)):
        image_dir = out_dir / "images" / split
        image_dir.mkdir(parents=True)
        num_negative = max(1, round(n * NEGATIVE_FRACTION)) if n > 1 else 0  # at least one
        negatives = set(rng.choice(n, num_negative, replace=False).tolist())
        records = []
        for i in range(n):
            num_objects = 0 if i in negatives else int(rng.integers(1, max_objects + 1))
            image, boxes, labels, areas = render_image(rng, size, num_objects, min_box, max_box)
            file = image_dir / f"{i:05d}.jpg"
            image.save(file, quality=95)
            records.append(
                DetectionRecord(i + 1, file, size, size, boxes=boxes, labels=labels, areas=areas)
            )
        source = DetectionSource(records, list(CLASS_NAMES), list(CATEGORY_IDS), name=split)
        write_coco(source, out_dir / "annotations" / f"instances_{split}.json", image_dir)


def synthetic_source(root: str | Path, split: str) -> DetectionSource:
    """The ``split`` (train / val) of a folder written by ``write_detection_shapes``."""
    root = Path(root)
    return read_coco(
        root / "annotations" / f"instances_{split}.json", root / "images" / split, name=split
    )
