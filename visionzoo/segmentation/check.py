"""Dataset report for segmentation data: images, masks, class pixel counts and every problem.

Each (image, mask) pair of a split is read through the data module's own ``MaskDecoder``, so the
report sees exactly what training would; a problem (unreadable file, size mismatch, values
outside the declared classes) is listed with its file instead of stopping the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.segmentation.formats import MaskDecoder, Pair

BAR_WIDTH = 40  # characters of the longest class bar


@dataclass
class SegmentationReport:
    """Statistics of one split and the problems found in it (``(file, detail)`` pairs)."""

    pairs: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    pixels: np.ndarray | None = None  # per class id; the last entry counts ignored pixels
    images_with_class: np.ndarray | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)


def check_pairs(
    pairs: Sequence[Pair], decoder: MaskDecoder, decode_images: bool = True
) -> SegmentationReport:
    """Read every mask (and, with ``decode_images``, every image) of ``pairs``."""
    n = decoder.num_classes
    report = SegmentationReport(
        pairs=len(pairs), pixels=np.zeros(n + 1, np.int64), images_with_class=np.zeros(n, np.int64)
    )
    for image_path, mask_path in pairs:
        try:
            mask = decoder(mask_path)
        except DataError as err:
            report.problems.append((str(mask_path), str(err)))
            continue
        if decode_images:
            try:
                with Image.open(image_path) as im:
                    im.load()
                    size = im.size
            except (OSError, SyntaxError) as err:
                report.problems.append((str(image_path), f"unreadable image ({err})"))
                continue
            if size != (mask.shape[1], mask.shape[0]):
                detail = f"image is {size[0]}×{size[1]}, its mask {mask.shape[1]}×{mask.shape[0]}"
                report.problems.append((str(image_path), detail))
        report.sizes.add((mask.shape[1], mask.shape[0]))
        ignored = mask == decoder.ignore_index
        counts = np.bincount(mask[~ignored].ravel(), minlength=n)[:n]
        report.pixels[:n] += counts
        report.pixels[n] += int(ignored.sum())
        report.images_with_class += counts > 0
    return report


def format_report(report: SegmentationReport, class_names: Sequence[str]) -> str:
    """The report as text: totals, one bar per class, then the problems."""
    total = int(report.pixels.sum()) or 1
    sizes = sorted(report.sizes)
    if not sizes:
        size_text = "-"
    elif len(sizes) == 1:
        size_text = f"{sizes[0][0]}×{sizes[0][1]}"
    else:
        size_text = (
            f"{len(sizes)} sizes, {sizes[0][0]}×{sizes[0][1]} … {sizes[-1][0]}×{sizes[-1][1]}"
        )
    lines = [f"pairs: {report.pairs}   mask sizes: {size_text}", "class pixels:"]
    peak = max(int(report.pixels.max()), 1)
    width = max(len(str(n)) for n in [*class_names, "(ignored)"])
    labels = [*class_names, "(ignored)"]
    for k, (name, count) in enumerate(zip(labels, report.pixels.tolist(), strict=True)):
        images = f"  in {report.images_with_class[k]} images" if k < len(class_names) else ""
        bar = "#" * round(BAR_WIDTH * count / peak)
        row = f"  {name:<{width}} {count:>12} {100 * count / total:6.2f}% {bar}{images}"
        lines.append(row.rstrip())
    absent = [n for n, c in zip(class_names, report.pixels, strict=False) if c == 0]
    problems = list(report.problems)
    if absent and report.pairs:
        problems.append(("(split)", f"declared classes never present: {', '.join(absent)}"))
    lines.append(f"problems: {len(problems)}")
    lines.extend(f"  {file}: {detail}" for file, detail in problems)
    return "\n".join(lines)


def check_data(datamodule: Any, splits: Sequence[str], decode_images: bool) -> str:
    """The ``check_data.py`` report of a segmentation data module: one section per split."""
    datamodule.prepare_data()
    sections = []
    for split in splits:
        report = check_pairs(datamodule.pairs(split), datamodule.decoder, decode_images)
        sections.append(f"== {split} ==\n{format_report(report, datamodule.class_names)}")
    return "\n".join(sections)
