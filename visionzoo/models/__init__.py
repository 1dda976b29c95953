"""Registered models. Every architecture module is imported here so it registers."""

from visionzoo.models import segmentation  # noqa: F401
