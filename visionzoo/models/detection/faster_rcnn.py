"""Placeholder: filled in by the detection work."""
