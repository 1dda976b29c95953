"""Data: readers for real on-disk formats, synthetic generators that write them, transforms."""
