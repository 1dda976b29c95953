"""The detection dataset checker: statistics and the problems it must list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.detection.check import capture_reader_warnings, check_detection, format_report
from visionzoo.detection.formats import keep_unreadable_images, read_coco, read_yolo


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    img = tmp_path / "img"
    img.mkdir()
    for name in ("ok.jpg", "neg.jpg", "small.jpg"):
        Image.new("RGB", (40, 30), (200, 10, 10)).save(img / name)
    (img / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(img / "truncated.jpg", quality=95)
    full = (img / "truncated.jpg").read_bytes()
    (img / "truncated.jpg").write_bytes(full[: len(full) - 1000])  # header intact, data cut
    images = [
        {"id": i, "file_name": name, "width": 40, "height": 30}
        for i, name in enumerate(["ok.jpg", "neg.jpg", "corrupt.jpg", "truncated.jpg"])
    ]
    images.append({"id": 9, "file_name": "small.jpg", "width": 50, "height": 30})
    anns = [
        {"id": 1, "image_id": 0, "category_id": 1, "bbox": [2, 2, 10, 10]},
        {"id": 2, "image_id": 0, "category_id": 1, "bbox": [2, 2, 10, 10]},  # duplicate of 1
        {"id": 3, "image_id": 0, "category_id": 2, "bbox": [2, 2, 10, 10], "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [30, 20, 20, 20]},  # clipped
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": [5, 5, 4, 4]},
    ]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, img


def test_check_lists_corrupt_image_size_mismatch_duplicate_and_fixed_boxes(
    tmp_path: Path,
) -> None:
    path, img = _dataset(tmp_path)
    source, fixed = capture_reader_warnings(lambda: read_coco(path, img, name="val"))
    report = check_detection(source, reader_warnings=fixed)
    assert (report.num_images, report.num_negative, report.num_crowd) == (5, 2, 1)
    assert report.boxes_per_class == {"a": 3, "b": 2}
    assert sum(c for _, c in report.size_histogram) == 5
    assert report.coco_sizes == {"small": 5, "medium": 0, "large": 0}
    found = {(p.kind, Path(p.file).name) for p in report.problems}
    assert found == {
        ("boxes fixed by reader", "corrupt.jpg"),
        ("corrupt image", "corrupt.jpg"),
        ("corrupt image", "truncated.jpg"),
        ("size mismatch", "small.jpg"),
        ("duplicate box", "ok.jpg"),
    }
    text = format_report(report)
    assert "val: 5 images (2 without boxes), 5 boxes (1 crowd, 0 difficult)" in text
    assert "5 problem(s)" in text
    assert "small.jpg: file is 40x30 but the annotations say 50x30" in text
    assert "ok.jpg: a boxes 0 and 1, IoU 1.00" in text
    assert "corrupt.jpg: 1 clipped, 0 dropped" in text


def test_check_without_decoding_reads_headers_only(tmp_path: Path) -> None:
    path, img = _dataset(tmp_path)
    source, _ = capture_reader_warnings(lambda: read_coco(path, img))
    kinds = {(p.kind, Path(p.file).name) for p in check_detection(source, False).problems}
    assert ("corrupt image", "corrupt.jpg") in kinds  # no header at all
    assert ("corrupt image", "truncated.jpg") not in kinds  # needs a full decode


def test_check_flags_labels_outside_the_class_list(tmp_path: Path) -> None:
    path, img = _dataset(tmp_path)
    source, _ = capture_reader_warnings(lambda: read_coco(path, img))
    source.records[3].labels[:] = 7  # truncated.jpg
    report = check_detection(source, decode_images=False)
    assert ("class id out of range", "truncated.jpg") in {
        (p.kind, Path(p.file).name) for p in report.problems
    }
    assert report.boxes_per_class == {"a": 2, "b": 2}


def test_missing_images_are_listed_not_fatal(tmp_path: Path) -> None:
    """Training stops at the first missing image; the checker lists each one (COCO, which
    gives sizes, and YOLO, which must read them from the missing file)."""
    path, img = _dataset(tmp_path)
    (img / "neg.jpg").unlink()
    with pytest.raises(DataError, match="neg.jpg"):
        read_coco(path, img)
    with keep_unreadable_images():
        source, fixed = capture_reader_warnings(lambda: read_coco(path, img))
    found = {
        (p.kind, Path(p.file).name) for p in check_detection(source, reader_warnings=fixed).problems
    }
    assert ("missing image", "neg.jpg") in found and ("corrupt image", "corrupt.jpg") in found
    with pytest.raises(DataError, match="neg.jpg"):
        read_coco(path, img)  # the lenient mode ends with its block

    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (40, 30)).save(yolo / "images" / f"{name}.jpg")
        (yolo / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [x]\n")
    (yolo / "images" / "b.jpg").write_bytes(b"")  # present but unreadable
    with keep_unreadable_images():
        source, fixed = capture_reader_warnings(lambda: read_yolo(yolo / "data.yaml", "train"))
    found = {
        (p.kind, Path(p.file).name) for p in check_detection(source, reader_warnings=fixed).problems
    }
    assert ("corrupt image", "b.jpg") in found
