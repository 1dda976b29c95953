"""Registered models. Every architecture module is imported here so it registers."""

from visionzoo.models import detection, segmentation  # noqa: F401
