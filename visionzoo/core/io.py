"""Image and mask file reading with errors that name the file and say what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


class DataError(ValueError):
    """A problem with the user's data; the message names the file and the fix."""


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, turning I/O failures into a ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file {str(path)!r} does not exist; check the dataset root/split")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode in ("P", "L", "RGB", "I", "I;16") else im.convert("RGB")
    except Image.DecompressionBombError as err:
        raise DataError(
            f"image {str(path)!r} is too large to decode safely ({err}); shrink it or remove it "
            "from the dataset"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"cannot decode image {str(path)!r} ({err}); the file is corrupt or not an image — "
            "re-export it or remove it from the dataset"
        ) from err


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as an ``(H, W, 3)`` uint8 RGB array (grey images are replicated)."""
    return np.asarray(open_image(path).convert("RGB"))


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder``, sorted naturally (``2.png`` before ``10.png``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"image folder {str(folder)!r} does not exist; check data.root (the dataset's top "
            "folder) and the layout's folder names (data.images, data.masks, data.splits)"
        )
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> tuple:
    """Sort key that orders digit runs numerically (``s2`` < ``s10``)."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))
