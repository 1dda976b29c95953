"""Registered losses. Every module is imported here so its losses register."""

from visionzoo.losses import classification, combined, region  # noqa: F401
