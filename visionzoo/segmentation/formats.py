"""Segmentation layouts (image + mask folders, Pascal VOC, CamVid, ``<image> <label>`` list
files) and mask decoding."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from visionzoo.core.io import DataError, list_images, open_image

Pair = tuple[Path, Path]


def _select(
    items: list[Path], split: str | None, split_dir: Path, stage: str | None = None
) -> list[Path]:
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
            f"split file {str(split_file)!r} does not exist; set data.splits.{stage or '<stage>'} "
            "to an existing split name, a slice like '0:24', a list file like "
            "'lists/train.txt', or null for all images"
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
    root: str | Path,
    split: str | None,
    images: str = "images",
    masks: str = "masks",
    *,
    stage: str | None = None,
) -> list[Pair]:
    """``root/<images>/x.*`` paired with ``root/<masks>/x.png``; splits in ``root/splits``
    (``stage`` only names the config key in errors)."""
    root = Path(root)
    found = _select(list_images(root / images), split, root / "splits", stage)
    return _pair(found, root / masks)


def voc_pairs(root: str | Path, split: str | None, *, stage: str | None = None) -> list[Pair]:
    """Pascal VOC: ``JPEGImages``, ``SegmentationClass`` (palette PNGs whose indices are class
    ids, 255 = boundary), ``ImageSets/Segmentation/<split>.txt``."""
    root = Path(root)
    split_dir = root / "ImageSets" / "Segmentation"
    images = _select(list_images(root / "JPEGImages"), split, split_dir, stage)
    return _pair(images, root / "SegmentationClass")


def camvid_pairs(root: str | Path, split: str | None) -> list[Pair]:
    """CamVid in the SegNet layout: ``<split>/`` images and ``<split>annot/`` masks holding
    class ids 0..10 and 11 = void."""
    root = Path(root)
    split = split or "train"
    return _pair(list_images(root / split), root / f"{split}annot")


LIST_FILE_SUFFIXES = (".txt", ".lst", ".list")


def is_list_file(split: str | None) -> bool:
    """Whether a ``data.splits.<stage>`` value names a list file of ``<image> <label>`` lines
    (it ends with ``.txt``, ``.lst`` or ``.list``) rather than a split name (``train`` means
    ``<root>/splits/train.txt`` listing file stems) or a slice like ``0:24``."""
    return split is not None and str(split).strip().lower().endswith(LIST_FILE_SUFFIXES)


def _rewrite(text: str, prefix: Mapping[str, str]) -> tuple[Path, bool]:
    """``text`` with its first matching prefix replaced, and whether one matched. A prefix
    matches whole folders only: ``/a/Cam`` does not match ``/a/CamVid/x.png``."""
    for old, new in prefix.items():
        head = str(old).rstrip("/")  # "/" becomes "" and then matches every absolute path
        if text == head or text.startswith(head + "/"):
            return Path("" if new is None else str(new)) / text[len(head) :].lstrip("/"), True
    return Path(text), False


def _prefix_hint(root: Path, texts: list[str], rewrites: bool) -> str:
    """What to do about missing listed files ``texts`` (as written, no rewrite matched): the
    longest leading folder of theirs whose removal finds them under ``root``, if any."""
    generic = f"check data.root={str(root)!r} (relative paths resolve under it)" + (
        ", data.list_prefix" if rewrites else ""
    )
    if not texts:
        return generic + " and the list file"
    try:
        common = PurePosixPath(os.path.commonpath([str(PurePosixPath(t).parent) for t in texts]))
    except ValueError:  # absolute and relative paths mixed: no single folder to rewrite
        return generic + " and the list file"
    for head in (common, *common.parents):
        if str(head) == ".":
            break
        # the first and last missing file stand for the list; checking all would be slow
        if all((root / _rewrite(t, {str(head): ""})[0]).is_file() for t in (texts[0], texts[-1])):
            return f"set data.list_prefix={{{str(head)!r}: ''}} to read them under data.root"
    if common.is_absolute():
        return (
            f"the paths are absolute and no leading folder of theirs maps them under data.root="
            f"{str(root)!r}: if the list was written on another machine set data.list_prefix="
            f"{{{str(common)!r}: '<that folder here>'}}, otherwise {generic}"
        )
    return generic + " and the list file"


def list_file_pairs(
    root: str | Path,
    list_file: str | Path,
    prefix: Mapping[str, str] | None = None,
    *,
    stage: str | None = None,
) -> list[Pair]:
    """Pairs from a dataset's own split list: one ``<image> <label>`` line per sample
    (whitespace separated; blank lines and ``#`` lines skipped), in the file's order.

    ``list_file`` is relative to ``root`` unless absolute. Each path first gets the first
    matching ``prefix`` rewrite (``{"/home/author/CamVid": ""}`` strips that folder so the path
    is relative to ``root``; a non-empty value replaces it), then relative paths resolve under
    ``root``. ``stage`` only names the config key (``data.splits.<stage>``) in errors. Every
    listed file must exist; a one-line ``DataError`` names the list file, the line and the fix.
    """
    root = Path(root)
    key = f"data.splits.{stage or '<stage>'}"
    path = Path(list_file) if Path(list_file).is_absolute() else root / list_file
    if not path.is_file():
        raise DataError(
            f"list file {str(path)!r} ({key}={str(list_file)!r}, relative to data.root unless "
            f"absolute) does not exist; set {key} to an existing '<image> <label>' list file, a "
            "split name, a slice like '0:24', or null for all images"
        )
    rewrites = dict(prefix or {})
    if any(not str(old).strip("/") and str(old) != "/" for old in rewrites):
        raise DataError(
            "data.list_prefix has an empty key; give the leading folder to rewrite, e.g. "
            "{'/home/author/CamVid': ''}"
        )
    where = f"list file {str(path)!r} ({key})"
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{where} is not UTF-8 text ({err}); give a text list file") from err
    pairs: list[Pair] = []
    missing: list[tuple[int, str, str, bool, Path]] = []  # line, role, text, rewritten, path
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 1:
            raise DataError(
                f"{where} line {n} has one path ({fields[0]!r}) but needs '<image> <label>'; "
                f"a list of file stems belongs in <root>/splits/<name>.txt with {key}=<name>"
            )
        if len(fields) > 2:
            raise DataError(
                f"{where} line {n} has {len(fields)} whitespace-separated fields but needs two, "
                "'<image> <label>': paths with spaces cannot be read from this format, so "
                "rename those files (or drop the extra columns)"
            )
        resolved = []
        for role, text in zip(("image", "label"), fields, strict=True):
            p, rewritten = _rewrite(text, rewrites)
            p = p if p.is_absolute() else root / p
            if not p.is_file():
                missing.append((n, role, text, rewritten, p))
            resolved.append(p)
        pairs.append((resolved[0], resolved[1]))
    if not pairs:
        raise DataError(f"{where} has no '<image> <label>' lines; fill it or change {key}")
    if missing:
        n, role, text, _, p = missing[0]
        looked = "" if text == str(p) else f" (looked for {str(p)!r})"
        count = f" ({len(missing)} of {2 * len(pairs)} listed files are missing)"
        hint = _prefix_hint(root, [m[2] for m in missing if not m[3]], bool(rewrites))
        raise DataError(
            f"{where} line {n}: {role} {text!r} does not exist{looked}"
            f"{count if len(missing) > 1 else ''}; {hint}"
        )
    return pairs


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
