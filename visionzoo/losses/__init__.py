"""Registered losses. Every module is imported here so its losses register."""

from visionzoo.losses import box, classification, combined, ghm, region  # noqa: F401
