"""Joint image + mask pipelines: geometric ops move both, colour ops touch only the image."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def segmentation_transform(
    *,
    train: bool,
    image_size: Sequence[int] | None,
    scale: Sequence[float] = (0.5, 1.0),
    hflip: float = 0.5,
    vflip: float = 0.0,
    rotate90: float = 0.0,
    color: float = 0.2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Training: random scaled crop to ``image_size``, flips, 90° turns, brightness/contrast.
    Evaluation: resize to ``image_size`` (``None`` keeps the full image for whole-image or
    sliding-window inference). Masks are resized with nearest neighbour by albumentations."""
    ops: list[A.BasicTransform] = []
    if train:
        if image_size is None:
            raise ValueError("data.image_size must be set for training crops")
        ops.append(
            A.RandomResizedCrop(size=tuple(image_size), scale=tuple(scale), ratio=(0.75, 1.333))
        )
        if hflip:
            ops.append(A.HorizontalFlip(p=hflip))
        if vflip:
            ops.append(A.VerticalFlip(p=vflip))
        if rotate90:
            ops.append(A.RandomRotate90(p=rotate90))
        if color:
            ops.append(A.RandomBrightnessContrast(brightness_limit=color, contrast_limit=color))
    elif image_size is not None:
        ops.append(A.Resize(*image_size))
    ops += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(ops, seed=0)
