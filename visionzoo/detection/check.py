"""Dataset checker for detection sources: statistics and every problem worth fixing.

``check_detection`` is a pure function over a ``DetectionSource`` (plus the ``BoxesFixedWarning``
its reader issued, captured with ``capture_reader_warnings``); ``format_report`` renders the
result as text for the ``check_data.py`` command.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from visionzoo.detection.formats import BoxesFixedWarning
from visionzoo.detection.records import DetectionRecord, DetectionSource

# Histogram edges on sqrt(area) in pixels; COCO's small / medium / large split at 32² and 96².
SIZE_EDGES = (0, 8, 16, 32, 64, 128, 256, 512, math.inf)
COCO_SMALL, COCO_LARGE = 32**2, 96**2
BAR_WIDTH = 40  # characters of the longest histogram bar


@dataclass
class Problem:
    """One thing to fix: its kind, the file it is in and what is wrong."""

    kind: str
    file: str
    detail: str


@dataclass
class CheckReport:
    """Statistics of one source and the problems found in it."""

    name: str
    num_images: int
    num_negative: int
    boxes_per_class: dict[str, int]
    num_crowd: int
    num_difficult: int
    size_histogram: list[tuple[str, int]]  # (sqrt(area) bucket, boxes)
    coco_sizes: dict[str, int]  # small / medium / large box counts
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def capture_reader_warnings(
    read: Callable[[], DetectionSource],
) -> tuple[DetectionSource, list[BoxesFixedWarning]]:
    """Call a reader and return its source and the ``BoxesFixedWarning``s it issued (other
    warnings are issued again as usual)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = read()
    kept = []
    for w in caught:
        if isinstance(w.message, BoxesFixedWarning):
            kept.append(w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return source, kept


def _image_problem(rec: DetectionRecord, decode: bool) -> Problem | None:
    name = str(rec.file)
    if not rec.file.is_file():
        return Problem("missing image", name, "file does not exist")
    try:
        with Image.open(rec.file) as im:
            size = im.size
            if decode:
                im.verify()  # structure check; a verified image must be reopened to decode
        if decode:
            with Image.open(rec.file) as im:
                im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return Problem("corrupt image", name, f"cannot be read or decoded ({err})")
    if size != (rec.width, rec.height):
        return Problem(
            "size mismatch",
            name,
            f"file is {size[0]}x{size[1]} but the annotations say {rec.width}x{rec.height}",
        )
    return None


def _box_problems(
    rec: DetectionRecord, class_names: list[str], duplicate_iou: float
) -> list[Problem]:
    name, n_cls, out = str(rec.file), len(class_names), []
    bad = (rec.labels < 0) | (rec.labels >= n_cls)
    for j in np.flatnonzero(bad):
        out.append(Problem("class id out of range", name, f"box {j}: label {rec.labels[j]}"))
    b = rec.boxes
    invalid = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    outside = (b[:, :2] < 0).any(1) | (b[:, 2] > rec.width) | (b[:, 3] > rec.height)
    for j in np.flatnonzero(invalid | outside):
        what = "empty" if invalid[j] else "outside the image"
        out.append(Problem("invalid box", name, f"box {j} {b[j].tolist()} is {what}"))
    iou = box_iou(torch.from_numpy(b), torch.from_numpy(b)).numpy()
    same = rec.labels[:, None] == rec.labels[None, :]
    for i, j in zip(*np.nonzero(np.triu(same & (iou >= duplicate_iou), k=1)), strict=True):
        cls = class_names[rec.labels[i]] if not bad[i] else str(rec.labels[i])
        out.append(Problem("duplicate box", name, f"{cls} boxes {i} and {j}, IoU {iou[i, j]:.2f}"))
    return out


def check_detection(
    source: DetectionSource,
    decode_images: bool = True,
    *,
    reader_warnings: Sequence[BoxesFixedWarning] = (),
    duplicate_iou: float = 0.7,
) -> CheckReport:
    """Count images, boxes per class, crowd / difficult boxes and box sizes, and list problems:
    missing, unreadable or corrupt images (fully decoded when ``decode_images``), image sizes
    that differ from the annotations, same-class boxes overlapping with IoU ≥ ``duplicate_iou``
    (likely double annotations), labels outside the class list, boxes outside their image, and
    the boxes the reader clipped or dropped (``reader_warnings``, see
    ``capture_reader_warnings``)."""
    names = list(source.class_names)
    problems: list[Problem] = []
    if len(source.category_ids) != len(names):
        problems.append(
            Problem(
                "class list",
                source.name,
                f"{len(names)} class names but {len(source.category_ids)} category ids",
            )
        )
    for w in reader_warnings:
        for file, clipped, dropped in w.fixes:
            problems.append(
                Problem("boxes fixed by reader", file, f"{clipped} clipped, {dropped} dropped")
            )
    for rec in source.records:
        image_problem = _image_problem(rec, decode_images)
        problems += [image_problem] if image_problem else []
        problems += _box_problems(rec, names, duplicate_iou)

    labels = np.concatenate([r.labels for r in source.records] or [np.zeros(0, np.int64)])
    areas = np.concatenate([r.areas for r in source.records] or [np.zeros(0, np.float32)])
    counts = np.bincount(labels[(labels >= 0) & (labels < len(names))], minlength=len(names))
    hist, _ = np.histogram(np.sqrt(areas.clip(min=0)), bins=SIZE_EDGES)
    buckets = [f"{lo}-{hi}" for lo, hi in zip(SIZE_EDGES[:-2], SIZE_EDGES[1:-1], strict=True)]
    return CheckReport(
        name=source.name,
        num_images=len(source.records),
        num_negative=sum(len(r.boxes) == 0 for r in source.records),
        boxes_per_class={n: int(c) for n, c in zip(names, counts, strict=True)},
        num_crowd=int(sum(r.iscrowd.sum() for r in source.records)),
        num_difficult=int(sum(r.difficult.sum() for r in source.records)),
        size_histogram=list(zip([*buckets, f"{SIZE_EDGES[-2]}+"], hist.tolist(), strict=True)),
        coco_sizes={
            "small": int((areas < COCO_SMALL).sum()),
            "medium": int(((areas >= COCO_SMALL) & (areas < COCO_LARGE)).sum()),
            "large": int((areas >= COCO_LARGE).sum()),
        },
        problems=problems,
    )


def format_report(report: CheckReport) -> str:
    """The report as aligned plain text: statistics, size histogram, then every problem."""
    total = sum(report.boxes_per_class.values())
    lines = [
        f"{report.name or 'dataset'}: {report.num_images} images "
        f"({report.num_negative} without boxes), {total} boxes "
        f"({report.num_crowd} crowd, {report.num_difficult} difficult)",
        "boxes per class:",
    ]
    width = max((len(n) for n in report.boxes_per_class), default=0)
    lines += [f"  {n:<{width}}  {c:>7}" for n, c in report.boxes_per_class.items()]
    lines.append("box size, sqrt(area) in px:")
    peak = max((c for _, c in report.size_histogram), default=0) or 1
    for bucket, c in report.size_histogram:
        lines.append(f"  {bucket:>8}  {c:>7}  {'#' * math.ceil(BAR_WIDTH * c / peak)}".rstrip())
    s = report.coco_sizes
    lines.append(
        f"  COCO small (< 32²): {s['small']}, medium: {s['medium']}, large (≥ 96²): {s['large']}"
    )
    if report.ok:
        lines.append("no problems found")
        return "\n".join(lines)
    lines.append(f"{len(report.problems)} problem(s):")
    kind_width = max(len(p.kind) for p in report.problems)
    lines += [f"  {p.kind:<{kind_width}}  {p.file}: {p.detail}" for p in report.problems]
    return "\n".join(lines)


def check_data(datamodule: Any, splits: Sequence[str], decode_images: bool) -> str:
    """The ``check_data.py`` report of a detection data module: one section per split."""
    from visionzoo.detection.formats import keep_unreadable_images

    datamodule.prepare_data()
    sections = []
    for split in splits:
        with keep_unreadable_images():  # list missing / unreadable images as problems
            source, fixed = capture_reader_warnings(lambda s=split: datamodule.source(s))
        report = check_detection(source, decode_images=decode_images, reader_warnings=fixed)
        sections.append(f"== {split} ==\n{format_report(report)}")
    return "\n".join(sections)
