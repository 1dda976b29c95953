"""In-memory detection annotations shared by every detection format reader.

A format reader (COCO JSON, YOLO txt, Pascal VOC XML, the synthetic set) turns files into one
``DetectionSource``; transforms, the evaluator and the dataset checker only ever see this type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class DetectionRecord:
    """One image and its boxes.

    ``boxes`` are float32 ``[N, 4]`` ``(x1, y1, x2, y2)`` in absolute pixels of the original
    image; ``labels`` are contiguous class indices ``0..C-1``. ``iscrowd`` marks COCO crowd
    regions and ``difficult`` marks VOC difficult objects: both are left out of training targets
    and ignored (never false negatives) in evaluation. ``areas`` is COCO's ``area`` field when the
    source has one (segment area) and the box area otherwise; evaluation uses it for the
    small/medium/large split exactly as pycocotools does.
    """

    image_id: int
    file: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    iscrowd: np.ndarray = field(default_factory=lambda: _empty((0,), bool))
    difficult: np.ndarray = field(default_factory=lambda: _empty((0,), bool))
    areas: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(n, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(n)
        self.iscrowd = np.asarray(self.iscrowd, dtype=bool).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if len(self.iscrowd) == 0 and n:
            self.iscrowd = np.zeros(n, dtype=bool)
        if len(self.difficult) == 0 and n:
            self.difficult = np.zeros(n, dtype=bool)
        if self.areas is None:
            wh = (self.boxes[:, 2:] - self.boxes[:, :2]).clip(min=0)
            self.areas = (wh[:, 0] * wh[:, 1]).astype(np.float32)
        self.areas = np.asarray(self.areas, dtype=np.float32).reshape(n)

    @property
    def ignored(self) -> np.ndarray:
        """Boxes that are neither trained on nor counted as misses: crowd or difficult."""
        return self.iscrowd | self.difficult


@dataclass
class DetectionSource:
    """All records of one split plus the class list.

    ``category_ids[k]`` is the id the source uses for contiguous label ``k`` (COCO's
    non-contiguous ids; ``k + 1`` for VOC and YOLO), so results can be written back in the
    source's own ids.
    """

    records: list[DetectionRecord]
    class_names: list[str]
    category_ids: list[int]
    name: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
