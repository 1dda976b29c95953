"""Segmentation layouts (image + mask folders, Pascal VOC, CamVid) and mask decoding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionzoo.core.io import DataError, list_images, open_image

Pair = tuple[Path, Path]


def _select(items: list[Path], split: str | None, split_dir: Path) -> list[Path]:
    """Apply a split: ``None`` (all), ``"a:b"`` (slice of the natural order) or a split name
    whose ``<split_dir>/<name>.txt`` lists file stems."""
    if split is None:
        return items
    if ":" in split:
        a, b = (int(v) if v else None for v in split.split(":"))
        return items[a:b]
    split_file = split_dir / f"{split}.txt"
    if not split_file.is_file():
        raise DataError(
            f"split file {str(split_file)!r} does not exist; set data.splits.<stage> to an "
            "existing "
            "split name, a slice like '0:24', or null for all images"
        )
    by_stem = {p.stem: p for p in items}
    stems = [s.strip() for s in split_file.read_text().splitlines() if s.strip()]
    missing = [s for s in stems if s not in by_stem]
    if missing:
        raise DataError(f"{split_file}: {len(missing)} listed images not found, e.g. {missing[:3]}")
    return [by_stem[s] for s in stems]


def _pair(images: list[Path], mask_dir: Path) -> list[Pair]:
    masks = {p.stem: p for p in list_images(mask_dir)}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise DataError(
            f"{len(missing)} images have no mask in {str(mask_dir)!r} (same file stem expected), "
            f"e.g. {missing[:3]}"
        )
    return [(p, masks[p.stem]) for p in images]


def mask_folder_pairs(
    root: str | Path, split: str | None, images: str = "images", masks: str = "masks"
) -> list[Pair]:
    """``root/<images>/x.*`` paired with ``root/<masks>/x.png``; splits in ``root/splits``."""
    root = Path(root)
    return _pair(_select(list_images(root / images), split, root / "splits"), root / masks)


def voc_pairs(root: str | Path, split: str | None) -> list[Pair]:
    """Pascal VOC: ``JPEGImages``, ``SegmentationClass`` (palette PNGs whose indices are class
    ids, 255 = boundary), ``ImageSets/Segmentation/<split>.txt``."""
    root = Path(root)
    split_dir = root / "ImageSets" / "Segmentation"
    images = _select(list_images(root / "JPEGImages"), split, split_dir)
    return _pair(images, root / "SegmentationClass")


def camvid_pairs(root: str | Path, split: str | None) -> list[Pair]:
    """CamVid in the SegNet layout: ``<split>/`` images and ``<split>annot/`` masks holding
    class ids 0..10 and 11 = void."""
    root = Path(root)
    split = split or "train"
    return _pair(list_images(root / split), root / f"{split}annot")


CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class MaskDecoder:
    """Turns a mask file into an ``(H, W)`` int64 array of class ids (``ignore_index`` allowed).

    - ``value_map``: stored value → class id (e.g. ``{0: 0, 255: 1}`` for 0/255 binary masks);
      map a value to ``ignore_index`` to ignore it.
    - ``palette``: one ``[r, g, b]`` per class for colour-coded RGB masks.
    - neither: stored values (grey level or palette index) are the class ids.
    Any value outside the declared classes is an error naming the file and the values.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        value_map: dict[int, int] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.lut: np.ndarray | None = None
        if value_map:
            self.lut = np.full(256, -1, dtype=np.int64)
            for k, v in value_map.items():
                self.lut[int(k)] = int(v)
        self.palette = None if palette is None else np.asarray(palette, dtype=np.int64)

    def __call__(self, path: str | Path) -> np.ndarray:
        im = open_image(path)
        if self.palette is not None:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
            code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            pal = (self.palette[:, 0] << 16) | (self.palette[:, 1] << 8) | self.palette[:, 2]
            mask = np.full(code.shape, -1, dtype=np.int64)
            for cls, c in enumerate(pal):
                mask[code == c] = cls
            bad = np.unique(rgb[mask < 0].reshape(-1, 3), axis=0)
            if len(bad):
                raise DataError(
                    f"mask {str(path)!r} has colours not in data.palette: {bad[:5].tolist()}; "
                    "add them to the palette or fix the mask"
                )
            return mask
        if im.mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB"))
            if not (rgb[..., 0] == rgb[..., 1]).all() or not (rgb[..., 1] == rgb[..., 2]).all():
                raise DataError(
                    f"mask {str(path)!r} is a colour (RGB) image: give data.palette=[[r,g,b], "
                    "...] with one colour per class, or convert the masks to class-id PNGs"
                )
        if im.mode not in ("L", "P"):
            im = im.convert("L")
        raw = np.asarray(im, dtype=np.int64)
        mask = self.lut[raw] if self.lut is not None else raw
        valid = (mask >= 0) & (mask < self.num_classes) | (mask == self.ignore_index)
        if not valid.all():
            values = np.unique(raw[~valid]).tolist()
            if self.lut is not None:
                raise DataError(
                    f"mask {str(path)!r} holds stored values {values[:10]} that data.value_map "
                    "does not map; add them to data.value_map (to a class id, or to "
                    f"ignore_index={self.ignore_index} to ignore them)"
                )
            raise DataError(
                f"mask {str(path)!r} holds values {values[:10]} that are neither one of the "
                f"{self.num_classes} class ids 0..{self.num_classes - 1} nor ignore_index="
                f"{self.ignore_index}; set data.num_classes, or data.value_map to map stored "
                "values to class ids (e.g. {0: 0, 255: 1})"
            )
        return mask
