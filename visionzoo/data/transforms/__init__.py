"""albumentations pipelines per family."""
