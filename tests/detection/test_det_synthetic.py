"""The ``detection_shapes`` generator: deterministic, COCO-readable, with negatives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from visionzoo.core.synthetic import STAMP, ensure_synthetic
from visionzoo.detection.synthetic import synthetic_source
from visionzoo.registry import list_generators

SMALL = {"num_train": 24, "num_val": 6, "size": 96, "min_box": 12, "max_box": 36, "seed": 3}


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != STAMP
    }


def test_generator_is_registered_and_deterministic(tmp_path: Path) -> None:
    assert "detection_shapes" in list_generators()
    a = _files(ensure_synthetic("detection_shapes", tmp_path / "a", **SMALL))
    b = _files(ensure_synthetic("detection_shapes", tmp_path / "b", **SMALL))
    assert a == b
    assert {"annotations/instances_train.json", "annotations/instances_val.json"} <= set(a)
    assert sum(k.startswith("images/train/") and k.endswith(".jpg") for k in a) == 24
    c = _files(ensure_synthetic("detection_shapes", tmp_path / "c", **{**SMALL, "seed": 4}))
    assert c["annotations/instances_train.json"] != a["annotations/instances_train.json"]


def test_written_data_loads_with_read_coco(tmp_path: Path) -> None:
    root = ensure_synthetic("detection_shapes", tmp_path / "shapes", **SMALL)
    categories = json.loads((root / "annotations" / "instances_val.json").read_text())["categories"]
    assert [(c["id"], c["name"]) for c in categories] == [
        (1, "circle"),
        (2, "square"),
        (3, "triangle"),
    ]
    train, val = synthetic_source(root, "train"), synthetic_source(root, "val")
    assert len(train.records) == 24 and len(val.records) == 6
    assert train.category_ids == [1, 2, 3] and train.class_names == ["circle", "square", "triangle"]
    assert sum(len(r.boxes) == 0 for r in train.records) >= 1  # negatives
    labels = np.concatenate([r.labels for r in train.records])
    assert set(labels.tolist()) == {0, 1, 2}
    for r in train.records + val.records:
        assert (r.width, r.height) == (96, 96) and r.file.is_file()
        wh = r.boxes[:, 2:] - r.boxes[:, :2]
        assert ((wh >= 12) & (wh <= 36)).all()
        assert (r.areas <= wh.prod(1)).all()  # pixel area of the shape within its box
        iou = box_iou(torch.from_numpy(r.boxes), torch.from_numpy(r.boxes)).fill_diagonal_(0)
        assert (iou < 0.3).all()
