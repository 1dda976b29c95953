"""Detection annotation readers (COCO JSON, Ultralytics YOLO txt, Pascal VOC XML) and a COCO
writer, all meeting in one ``DetectionSource`` whose boxes are ``xyxy`` pixels of the image.

Every reader passes its boxes through ``sanitize_boxes``: boxes are clipped to the image, and
boxes that are empty in the source's own coordinates, fall outside the image or are thinner
than 1 px after clipping are dropped, with one ``BoxesFixedWarning`` per reader call.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import shutil
import warnings
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from visionzoo.core.io import IMAGE_SUFFIXES, DataError, natural_key
from visionzoo.detection.records import DetectionRecord, DetectionSource

MAX_NAMED_FILES = 5  # files named in a warning before "and N more"


class BoxesFixedWarning(UserWarning):
    """Boxes were clipped or dropped while reading. ``fixes`` holds one ``(file, clipped,
    dropped)`` per annotation file touched, so the dataset checker can list them."""

    def __init__(self, message: str, fixes: list[tuple[str, int, int]]) -> None:
        super().__init__(message)
        self.fixes = fixes


def _name_files(files: list[str]) -> str:
    shown = ", ".join(files[:MAX_NAMED_FILES])
    more = len(files) - MAX_NAMED_FILES
    return shown + (f" and {more} more" if more > 0 else "")


def sanitize_boxes(
    records: list[DetectionRecord],
    source: str,
    *,
    where: list[str] | None = None,
    degenerate: list[np.ndarray] | None = None,
) -> list[DetectionRecord]:
    """Clip every record's boxes to its image and drop unusable ones; warn once for the lot.

    A box is dropped when it is degenerate in the source's own coordinates (``x2 <= x1`` or
    ``y2 <= y1`` in ``xyxy``, or where ``degenerate`` says so — VOC's 1-based inclusive corners
    need that mask), lies fully outside the image, or is under 1 px wide or high once clipped.
    ``where[i]`` names record ``i``'s annotation file in the warning (default: the image name).
    """
    out, fixes = [], []
    for i, rec in enumerate(records):
        b = rec.boxes
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        if degenerate is not None:
            bad |= degenerate[i]
        c = b.copy()
        c[:, 0::2] = c[:, 0::2].clip(0, rec.width)
        c[:, 1::2] = c[:, 1::2].clip(0, rec.height)
        drop = bad | (c[:, 2] - c[:, 0] < 1) | (c[:, 3] - c[:, 1] < 1)
        changed = ~drop & (c != b).any(1)
        if not (drop.any() or changed.any()):
            out.append(rec)
            continue
        file = where[i] if where is not None else rec.file.name
        fixes.append((file, int(changed.sum()), int(drop.sum())))
        wh = c[:, 2:] - c[:, :2]
        areas = np.minimum(rec.areas, wh[:, 0] * wh[:, 1])  # a clipped box cannot cover more
        keep = ~drop
        out.append(
            replace(
                rec,
                boxes=c[keep],
                labels=rec.labels[keep],
                iscrowd=rec.iscrowd[keep],
                difficult=rec.difficult[keep],
                areas=areas[keep],
            )
        )
    if fixes:
        files = [f for f, _, _ in fixes]
        clipped, dropped = sum(c for _, c, _ in fixes), sum(d for _, _, d in fixes)
        counts = []
        if clipped:
            counts.append(f"{clipped} box(es) clipped to the image")
        if dropped:
            counts.append(
                f"{dropped} box(es) dropped (empty: x2 <= x1 or y2 <= y1, outside the image, "
                "or under 1 px once clipped)"
            )
        message = (
            f"{source}: {'; '.join(counts)} in {len(files)} file(s): {_name_files(files)}. "
            "Fix those annotations to silence this warning."
        )
        warnings.warn(BoxesFixedWarning(message, fixes), stacklevel=3)
    return out


# Set by ``keep_unreadable_images``: readers keep records of missing or unreadable images (size
# 0×0 unless the annotations give it) so a dataset checker can list every such file.
_KEEP_UNREADABLE = contextvars.ContextVar("keep_unreadable_images", default=False)


@contextlib.contextmanager
def keep_unreadable_images() -> Iterator[None]:
    """Within this block the readers do not stop at a missing or unreadable image."""
    token = _KEEP_UNREADABLE.set(True)
    try:
        yield
    finally:
        _KEEP_UNREADABLE.reset(token)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; nothing is decoded."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as err:
        if _KEEP_UNREADABLE.get():
            return 0, 0
        raise DataError(f"cannot read image {str(path)!r} ({err}); re-export or remove it") from err


def _require_image(path: Path) -> Path:
    return path if _KEEP_UNREADABLE.get() else _require_file(path, "image file")


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} {str(path)!r} does not exist; check the dataset root and split")
    return path


# --------------------------------------------------------------------------- COCO
def read_coco(
    annotation_file: str | Path, image_dir: str | Path, name: str = ""
) -> DetectionSource:
    """COCO ``instances_*.json`` → records in the JSON's image order.

    Category ids (often non-contiguous, e.g. COCO's 1..90) map to labels ``0..C-1`` in sorted id
    order, kept in ``category_ids``. ``bbox`` ``[x, y, w, h]`` becomes ``xyxy``; ``iscrowd`` is
    kept as a flag; ``area`` is the annotation's (box area when absent). Images without
    annotations stay as negatives.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    data = json.loads(_require_file(annotation_file, "annotation file").read_text())
    cats = sorted(data.get("categories", []), key=lambda c: c["id"])
    label_of = {c["id"]: k for k, c in enumerate(cats)}
    images = {img["id"]: img for img in data.get("images", [])}
    anns_of: dict[Any, list[dict]] = defaultdict(list)
    for ann in data.get("annotations", []):
        where = f"{annotation_file}: annotation id {ann.get('id')}"
        if ann.get("category_id") not in label_of:
            raise DataError(
                f"{where} has category_id {ann.get('category_id')!r}, not among the categories "
                f"{sorted(label_of)}; fix the annotation or add the category"
            )
        if ann.get("image_id") not in images:
            raise DataError(f"{where} refers to image_id {ann.get('image_id')!r}, not in images")
        if len(ann.get("bbox", ())) != 4:
            raise DataError(f"{where} has no 4-number bbox [x, y, w, h]: {ann.get('bbox')!r}")
        anns_of[ann["image_id"]].append(ann)
    records, where = [], []
    for image_id, img in images.items():
        file = _require_image(image_dir / img["file_name"])
        width, height = img.get("width"), img.get("height")
        if not width or not height:
            width, height = _image_size(file)
        anns = anns_of[image_id]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        box_area = xywh[:, 2] * xywh[:, 3]
        records.append(
            DetectionRecord(
                image_id=image_id,
                file=file,
                width=int(width),
                height=int(height),
                boxes=boxes,
                labels=[label_of[a["category_id"]] for a in anns],
                iscrowd=[bool(a.get("iscrowd", 0)) for a in anns],
                difficult=[bool(a.get("difficult", 0)) for a in anns],
                areas=[a.get("area", box_area[j]) for j, a in enumerate(anns)],
            )
        )
        where.append(img["file_name"])
    records = sanitize_boxes(records, name or annotation_file.name, where=where)
    return DetectionSource(records, [c["name"] for c in cats], [c["id"] for c in cats], name=name)


def write_coco(
    source: DetectionSource, path: str | Path, image_dir: str | Path | None = None
) -> Path:
    """Write ``source`` as COCO JSON in its own category ids, with ``iscrowd`` and ``area``
    (and a non-standard ``difficult`` flag that ``read_coco`` reads back). ``file_name`` is
    relative to ``image_dir`` (default: the bare file name)."""
    path = Path(path)
    images, annotations = [], []
    for rec in source.records:
        file_name = rec.file.relative_to(image_dir).as_posix() if image_dir else rec.file.name
        images.append(
            {"id": rec.image_id, "file_name": file_name, "width": rec.width, "height": rec.height}
        )
        for box, label, crowd, difficult, area in zip(
            rec.boxes.tolist(), rec.labels, rec.iscrowd, rec.difficult, rec.areas, strict=True
        ):
            x1, y1, x2, y2 = box
            ann = {
                "id": len(annotations) + 1,
                "image_id": rec.image_id,
                "category_id": source.category_ids[label],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(area),
                "iscrowd": int(crowd),
            }
            if difficult:
                ann["difficult"] = 1
            annotations.append(ann)
    categories = [
        {"id": cid, "name": name, "supercategory": ""}
        for cid, name in zip(source.category_ids, source.class_names, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(doc))
    return path


def write_yolo(
    sources: dict[str, DetectionSource], root: str | Path, link_images: bool = True
) -> Path:
    """Write ``{split: source}`` as an Ultralytics YOLO dataset under ``root``:
    ``images/<split>/`` (symbolic links to the originals, or copies), ``labels/<split>/*.txt``
    (``class cx cy w h``, normalised) and ``data.yaml``; returns the YAML's path. Crowd and
    difficult boxes are left out (YOLO labels cannot mark them). All sources must share one
    class list."""
    root = Path(root)
    names = None
    for split, source in sources.items():
        if names is not None and list(source.class_names) != names:
            raise DataError(f"write_yolo: split {split!r} has other classes than the first split")
        names = list(source.class_names)
        images, labels = root / "images" / split, root / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for rec in source.records:
            target = images / rec.file.name
            target.unlink(missing_ok=True)  # a link from an earlier export, say
            if link_images:
                target.symlink_to(rec.file.resolve())
            else:
                shutil.copyfile(rec.file, target)
            keep = ~rec.ignored
            scale = np.array([rec.width, rec.height, rec.width, rec.height], dtype=np.float64)
            xyxy = rec.boxes[keep].astype(np.float64) / scale
            cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
            lines = [
                f"{int(c)} " + " ".join(f"{v:.6f}" for v in box)
                for c, box in zip(rec.labels[keep], cxcywh, strict=True)
            ]
            label_file = labels / rec.file.with_suffix(".txt").name
            label_file.write_text("".join(f"{x}\n" for x in lines))
    # an absolute ``path``: Ultralytics resolves a relative one against its working directory
    doc = {"path": str(root.resolve()), **{s: f"images/{s}" for s in sources}, "names": names}
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return data_yaml


# --------------------------------------------------------------------------- YOLO
def _yolo_names(cfg: dict, data_yaml: Path) -> list[str]:
    names = cfg.get("names")
    nc = cfg.get("nc")
    if names is None and nc is None:
        raise DataError(f"{data_yaml} has neither 'names' nor 'nc'; add names: [class0, ...]")
    if names is None:
        names = [f"class{i}" for i in range(int(nc))]
    elif isinstance(names, dict):
        ids = sorted(int(k) for k in names)
        if ids != list(range(len(ids))):
            raise DataError(f"{data_yaml}: 'names' ids must be 0..{len(ids) - 1}, got {ids}")
        names = [str(names.get(i, names.get(str(i)))) for i in ids]
    else:
        names = [str(n) for n in names]
    if nc is not None and int(nc) != len(names):
        raise DataError(
            f"{data_yaml}: nc={nc} but 'names' lists {len(names)} classes; make them agree "
            "(or drop nc)"
        )
    return names


def _yolo_images(entries: str | list[str], base: Path, key: str, data_yaml: Path) -> list[Path]:
    """A split entry: image folder (searched recursively), ``.txt`` list of image paths
    (relative lines resolve against the list's folder), or a list of those."""
    files: list[Path] = []
    for entry in [entries] if isinstance(entries, str | Path) else entries:
        p = Path(entry) if Path(entry).is_absolute() else base / entry
        if p.is_dir():
            found = [f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES]
            files += sorted(found, key=lambda f: (str(f.parent), natural_key(f)))
        elif p.is_file() and p.suffix == ".txt":
            lines = [s.strip() for s in p.read_text().splitlines() if s.strip()]
            files += [Path(s) if Path(s).is_absolute() else (p.parent / s) for s in lines]
        else:
            raise DataError(
                f"{data_yaml}: {key}: {entry!r} (resolved to {str(p)!r}) is neither an image "
                "folder nor a .txt list of images; fix the path (relative paths start at 'path')"
            )
    return files


def _yolo_label_path(image: Path) -> Path:
    """Ultralytics convention: the last ``images`` folder in the path becomes ``labels``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _parse_yolo_labels(label_file: Path, nc: int) -> tuple[np.ndarray, np.ndarray]:
    """``cls cx cy w h`` (or ``cls x1 y1 x2 y2 ...`` polygon) lines → normalised cxcywh, labels."""
    boxes, labels = [], []
    fix = f"each line must be 'class cx cy w h' with an integer class in 0..{nc - 1}"
    for lineno, line in enumerate(label_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        at = f"{label_file}, line {lineno}"
        try:
            cls = int(parts[0])
        except ValueError:
            raise DataError(f"{at}: class id {parts[0]!r} is not an integer; {fix}") from None
        if not 0 <= cls < nc:
            raise DataError(
                f"{at}: class id {cls} is outside 0..{nc - 1} (nc={nc}); fix the label or add "
                "the class to 'names' in the data YAML"
            )
        try:
            values = np.array([float(v) for v in parts[1:]], dtype=np.float64)
        except ValueError:
            raise DataError(f"{at}: non-numeric coordinates {parts[1:]}; {fix}") from None
        if len(values) == 4:
            boxes.append(values)
        elif len(values) >= 6 and len(values) % 2 == 0:  # segment: its bounding box
            xy = values.reshape(-1, 2)
            lo, hi = xy.min(0), xy.max(0)
            boxes.append(np.concatenate([(lo + hi) / 2, hi - lo]))
        else:
            raise DataError(f"{at}: {len(parts)} values; {fix}")
        labels.append(cls)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64)


def read_yolo(data_yaml: str | Path, split: str) -> DetectionSource:
    """Ultralytics YOLO data YAML (``path``, ``train``/``val``/``test``, ``names``, ``nc``) →
    the records of ``split``.

    ``path`` (optional) and relative split paths resolve against the YAML's folder. Labels live
    at the image path with its last ``images`` folder replaced by ``labels`` and a ``.txt``
    suffix; a missing label file is a negative image. Image sizes come from file headers.
    """
    data_yaml = Path(data_yaml)
    if data_yaml.is_dir():
        raise DataError(f"{str(data_yaml)!r} is a folder; point data.root at the data YAML file")
    _require_file(data_yaml, "YOLO data YAML")
    cfg = yaml.safe_load(data_yaml.read_text()) or {}
    if split not in cfg or cfg[split] is None:
        raise DataError(
            f"{data_yaml} has no {split!r} key (keys: {sorted(cfg)}); add '{split}: <image "
            "folder or list>' or pick an existing split"
        )
    base = data_yaml.parent / cfg.get("path", ".")
    names = _yolo_names(cfg, data_yaml)
    records, where = [], []
    for i, image in enumerate(_yolo_images(cfg[split], base, split, data_yaml)):
        _require_image(image)
        width, height = _image_size(image)
        label_file = _yolo_label_path(image)
        cxcywh, labels = (
            _parse_yolo_labels(label_file, len(names))
            if label_file.is_file()
            else (np.zeros((0, 4)), np.zeros(0, dtype=np.int64))
        )
        xy, wh = cxcywh[:, :2], cxcywh[:, 2:]
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1) * [width, height, width, height]
        records.append(DetectionRecord(i, image, width, height, boxes=boxes, labels=labels))
        where.append(label_file.name)
    records = sanitize_boxes(records, f"{data_yaml.name} {split}", where=where)
    return DetectionSource(records, names, list(range(len(names))), name=split)


# --------------------------------------------------------------------------- Pascal VOC
def _voc_objects(xml_file: Path) -> tuple[ET.Element, list[tuple[str, list[float], bool]]]:
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as err:
        raise DataError(f"cannot parse {xml_file} ({err}); fix or re-export the XML") from err
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            raise DataError(
                f"{xml_file}: object {name!r} lacks a numeric <bndbox> xmin/ymin/xmax/ymax"
            ) from None
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
        objects.append((name, coords, difficult))
    return root, objects


def read_voc(
    root: str | Path,
    split: str,
    class_names: list[str] | None = None,
    keep_difficult: bool = True,
) -> DetectionSource:
    """Pascal VOC detection: ids from ``ImageSets/Main/<split>.txt``, ``Annotations/<id>.xml``,
    images in ``JPEGImages`` (the XML's ``<filename>`` when that file exists, else ``<id>.jpg``).

    VOC corners are 1-based inclusive pixel indices, so ``x1 = xmin - 1, y1 = ymin - 1,
    x2 = xmax, y2 = ymax``. ``class_names`` fixes the label order; when None it is the sorted
    set of names found in this split, so pass it explicitly to keep labels equal across splits.
    ``category_ids`` are ``1..C``. ``keep_difficult=False`` leaves difficult objects out.
    """
    root = Path(root)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        have = sorted(p.stem for p in split_file.parent.glob("*.txt"))
        raise DataError(f"VOC split file {str(split_file)!r} does not exist; splits found: {have}")
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    parsed = []
    for image_id in ids:
        xml_file = _require_file(root / "Annotations" / f"{image_id}.xml", "VOC annotation")
        xml, objects = _voc_objects(xml_file)
        if not keep_difficult:
            objects = [o for o in objects if not o[2]]
        parsed.append((image_id, xml_file, xml, objects))
    if class_names is None:
        class_names = sorted({o[0] for *_, objects in parsed for o in objects})
    label_of = {n: k for k, n in enumerate(class_names)}
    records, where, degenerate = [], [], []
    for i, (image_id, xml_file, xml, objects) in enumerate(parsed):
        for name, *_ in objects:
            if name not in label_of:
                raise DataError(
                    f"{xml_file}: class {name!r} is not in class_names {class_names}; add it to "
                    "data.class_names or fix the XML"
                )
        image = root / "JPEGImages" / (xml.findtext("filename") or "").strip()
        if not image.is_file():
            image = _require_image(root / "JPEGImages" / f"{image_id}.jpg")
        width, height = (int(float(xml.findtext(f"size/{k}") or 0)) for k in ("width", "height"))
        if not width or not height:
            width, height = _image_size(image)
        raw = np.array([o[1] for o in objects], dtype=np.float64).reshape(-1, 4)
        boxes = raw - [1, 1, 0, 0]
        records.append(
            DetectionRecord(
                i,
                image,
                width,
                height,
                boxes=boxes,
                labels=[label_of[o[0]] for o in objects],
                difficult=[o[2] for o in objects],
            )
        )
        where.append(xml_file.name)
        degenerate.append((raw[:, 2] <= raw[:, 0]) | (raw[:, 3] <= raw[:, 1]))
    records = sanitize_boxes(records, f"VOC {split}", where=where, degenerate=degenerate)
    return DetectionSource(
        records, list(class_names), list(range(1, len(class_names) + 1)), name=split
    )
