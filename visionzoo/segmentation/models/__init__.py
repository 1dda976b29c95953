"""Segmentation architectures: each returns per-pixel class logits ``(B, C, H, W)``."""

from visionzoo.segmentation.models import deeplab, fcn, unet  # noqa: F401
