"""Readers of real on-disk dataset formats."""
