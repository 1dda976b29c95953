"""Segmentation architectures: each returns per-pixel class logits ``(B, C, H, W)``."""

from visionzoo.models.segmentation import deeplab, fcn, unet  # noqa: F401
