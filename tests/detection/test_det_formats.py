"""Detection readers (COCO, YOLO, VOC), box sanitising and the COCO writer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.detection.formats import (
    BoxesFixedWarning,
    read_coco,
    read_voc,
    read_yolo,
    sanitize_boxes,
    write_coco,
    write_yolo,
)
from visionzoo.detection.records import DetectionRecord, DetectionSource

BCCD = SHARED_DATA / "bccd"
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)
    return path


# --------------------------------------------------------------------------- COCO
def _coco(tmp_path: Path, annotations: list[dict] | None = None) -> Path:
    for name in ("a.png", "b.png", "neg.png"):
        _image(tmp_path / "img" / name)
    doc = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
            {"id": 12, "file_name": "neg.png", "width": 40, "height": 30},
        ],
        # non-contiguous ids, listed out of order
        "categories": [{"id": 12, "name": "c12"}, {"id": 3, "name": "c3"}, {"id": 7, "name": "c7"}],
        "annotations": annotations
        or [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 10, 5], "area": 33.0},
            {"id": 2, "image_id": 10, "category_id": 12, "bbox": [5, 5, 20, 20], "iscrowd": 1},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [0, 0, 4, 4]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_maps_noncontiguous_ids_and_keeps_crowd_and_negatives(tmp_path: Path) -> None:
    src = read_coco(_coco(tmp_path), tmp_path / "img", name="val")
    assert src.class_names == ["c3", "c7", "c12"] and src.category_ids == [3, 7, 12]
    assert src.name == "val" and [r.image_id for r in src.records] == [10, 11, 12]
    a, b, neg = src.records
    np.testing.assert_array_equal(a.boxes, [[1, 2, 11, 7], [5, 5, 25, 25]])
    np.testing.assert_array_equal(a.labels, [1, 2])
    np.testing.assert_array_equal(a.iscrowd, [False, True])
    np.testing.assert_array_equal(a.areas, [33.0, 400.0])  # annotation area, else box area
    np.testing.assert_array_equal(b.labels, [0])
    assert len(neg.boxes) == 0 and neg.file == tmp_path / "img" / "neg.png"


def test_coco_unknown_category_names_file_annotation_and_valid_ids(tmp_path: Path) -> None:
    ann = [{"id": 42, "image_id": 10, "category_id": 5, "bbox": [0, 0, 4, 4]}]
    path = _coco(tmp_path, ann)
    with pytest.raises(DataError, match=r"instances\.json.*annotation id 42.*\[3, 7, 12\]"):
        read_coco(path, tmp_path / "img")


def test_coco_missing_image_names_the_path(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    (tmp_path / "img" / "b.png").unlink()
    with pytest.raises(DataError, match=r"img/b\.png"):
        read_coco(path, tmp_path / "img")


def test_write_coco_round_trip(tmp_path: Path) -> None:
    img = tmp_path / "images"
    records = [
        DetectionRecord(
            5,
            _image(img / "sub" / "x.png"),
            40,
            30,
            boxes=[[1.5, 2.0, 20.25, 28.0], [0, 0, 10, 10]],
            labels=[1, 0],
            iscrowd=[True, False],
            difficult=[False, True],
            areas=[100.0, 64.0],
        ),
        DetectionRecord(6, _image(img / "y.png"), 40, 30),
    ]
    src = DetectionSource(records, ["cat", "dog"], [4, 9], name="rt")
    write_coco(src, tmp_path / "ann.json", img)
    back = read_coco(tmp_path / "ann.json", img, name="rt")
    assert back.class_names == src.class_names and back.category_ids == src.category_ids
    for r0, r1 in zip(src.records, back.records, strict=True):
        assert (r0.image_id, r0.file, r0.width, r0.height) == (r1.image_id, r1.file, 40, 30)
        for key in ("boxes", "labels", "iscrowd", "difficult", "areas"):
            np.testing.assert_array_equal(getattr(r0, key), getattr(r1, key), err_msg=key)


# --------------------------------------------------------------------------- YOLO
def _yolo(tmp_path: Path, cfg: dict, labels: dict[str, str]) -> Path:
    ds = tmp_path / "ds"
    for name in ("images/train/a.jpg", "images/train/b.jpg", "images/val/c.jpg"):
        _image(ds / name, (40, 20))
    (ds / "val.txt").write_text("./images/val/c.jpg\n")
    for name, text in labels.items():
        (ds / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        (ds / "labels" / name).write_text(text)
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "data.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


YOLO_CFG = {"path": "../ds", "train": "images/train", "val": "val.txt", "nc": 2}


def test_yolo_relative_paths_dict_names_list_file_and_negatives(tmp_path: Path) -> None:
    cfg = {**YOLO_CFG, "names": {0: "cat", 1: "dog"}}
    lines = "1 0.5 0.5 0.5 0.25\n\n0 0.25 0.5 0.1 0.1\n1 0.1 0.1 0.3 0.2 0.2 0.6\n"  # + a polygon
    path = _yolo(tmp_path, cfg, {"train/a.txt": lines})
    src = read_yolo(path, "train")
    assert src.class_names == ["cat", "dog"] and src.category_ids == [0, 1]
    a, b = src.records
    assert a.file.name == "a.jpg" and (a.width, a.height) == (40, 20)
    np.testing.assert_allclose(a.boxes, [[10, 7.5, 30, 12.5], [8, 9, 12, 11], [4, 2, 12, 12]])
    np.testing.assert_array_equal(a.labels, [1, 0, 1])
    assert len(b.boxes) == 0  # no label file: a negative image
    val = read_yolo(path, "val")
    assert [r.file.name for r in val.records] == ["c.jpg"] and len(val.records[0].boxes) == 0


def test_yolo_split_as_list_and_names_as_list(tmp_path: Path) -> None:
    cfg = {**YOLO_CFG, "train": ["images/train", "val.txt"], "names": ["cat", "dog"]}
    src = read_yolo(_yolo(tmp_path, cfg, {}), "train")
    assert [r.file.name for r in src.records] == ["a.jpg", "b.jpg", "c.jpg"]


@pytest.mark.parametrize("value", ["2", "-1", "1.5", "dog"])
def test_yolo_bad_class_id_names_file_line_and_value(tmp_path: Path, value: str) -> None:
    labels = {"train/a.txt": f"0 0.5 0.5 0.2 0.2\n{value} 0.5 0.5 0.2 0.2\n"}
    path = _yolo(tmp_path, {**YOLO_CFG, "names": ["cat", "dog"]}, labels)
    pattern = rf"labels/train/a\.txt, line 2: class id '?{value}'?.*0\.\.1"
    with pytest.raises(DataError, match=pattern):
        read_yolo(path, "train")


def test_yolo_missing_split_key_and_nc_mismatch(tmp_path: Path) -> None:
    path = _yolo(tmp_path, {**YOLO_CFG, "names": ["cat", "dog"]}, {})
    with pytest.raises(DataError, match=r"no 'test' key \(keys: \['names', 'nc', 'path'"):
        read_yolo(path, "test")
    path.write_text(yaml.safe_dump({**YOLO_CFG, "names": ["cat"]}))
    with pytest.raises(DataError, match="nc=2 but 'names' lists 1"):
        read_yolo(path, "train")


# --------------------------------------------------------------------------- VOC
def _voc_xml(name: str, objects: list[tuple[str, tuple[int, ...], int]], w=40, h=30) -> str:
    objs = "".join(
        f"<object><name>{cls}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for cls, b, d in objects
    )
    return (
        f"<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height>"
        f"</size>{objs}</annotation>"
    )


def _voc(tmp_path: Path, xmls: dict[str, str]) -> Path:
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    for image_id, xml in xmls.items():
        _image(tmp_path / "JPEGImages" / f"{image_id}.jpg")
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(xml)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("\n".join(xmls) + "\n")
    return tmp_path


def test_voc_one_based_corners_difficult_and_filename_fallback(tmp_path: Path) -> None:
    root = _voc(
        tmp_path,
        {
            "0001": _voc_xml("0001.jpg", [("dog", (1, 1, 10, 20), 0), ("cat", (5, 6, 40, 30), 1)]),
            "0002": _voc_xml("renamed.jpg", []),  # <filename> not on disk → 0002.jpg
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to clip or drop here
        src = read_voc(root, "train")
    assert src.class_names == ["cat", "dog"] and src.category_ids == [1, 2]  # sorted names
    r = src.records[0]
    np.testing.assert_array_equal(r.boxes, [[0, 0, 10, 20], [4, 5, 40, 30]])
    np.testing.assert_array_equal(r.labels, [1, 0])
    np.testing.assert_array_equal(r.difficult, [False, True])
    assert src.records[1].file.name == "0002.jpg" and len(src.records[1].boxes) == 0
    easy = read_voc(root, "train", class_names=["dog", "cat"], keep_difficult=False)
    np.testing.assert_array_equal(easy.records[0].labels, [0])


def test_voc_unknown_class_names_the_xml_and_the_name(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"0001": _voc_xml("0001.jpg", [("bird", (1, 1, 10, 20), 0)])})
    with pytest.raises(DataError, match=r"0001\.xml: class 'bird' is not in class_names"):
        read_voc(root, "train", class_names=["cat", "dog"])


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared BCCD data not present")
@pytest.mark.parametrize(
    ("split", "images", "per_class", "degenerate_in"),
    [
        # README table minus the zero-area RBC boxes of BloodImage_00343 (train), _00338 (val)
        ("train", 205, [2382 - 1, 214, 209], "BloodImage_00343.xml"),
        ("val", 87, [968 - 1, 87, 83], "BloodImage_00338.xml"),
        ("test", 72, [805, 71, 69], None),
    ],
)
def test_voc_bccd_splits(
    split: str, images: int, per_class: list[int], degenerate_in: str | None
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = read_voc(BCCD, split, class_names=BCCD_CLASSES)
    fixed = [w.message for w in caught if issubclass(w.category, BoxesFixedWarning)]
    assert len(src.records) == images
    labels = np.concatenate([r.labels for r in src.records])
    assert np.bincount(labels, minlength=3).tolist() == per_class
    assert all((r.width, r.height) == (640, 480) for r in src.records)
    if degenerate_in is None:
        assert fixed == []
    else:
        assert len(fixed) == 1 and fixed[0].fixes == [(degenerate_in, 0, 1)]
        assert degenerate_in in str(fixed[0])


def test_write_yolo_round_trip_drops_crowd_and_difficult(tmp_path: Path) -> None:
    img = tmp_path / "orig"
    records = [
        DetectionRecord(
            0,
            _image(img / "x.png", (40, 30)),
            40,
            30,
            boxes=[[1.5, 2.0, 20.25, 28.0], [0, 0, 10, 10], [5, 5, 9, 9]],
            labels=[1, 0, 0],
            iscrowd=[False, True, False],
            difficult=[False, False, True],
        ),
        DetectionRecord(1, _image(img / "neg.png", (40, 30)), 40, 30),
    ]
    src = DetectionSource(records, ["cat", "dog"], [0, 1], name="t")
    data_yaml = write_yolo({"train": src, "val": src}, tmp_path / "yolo")
    for split in ("train", "val"):
        back = read_yolo(data_yaml, split)
        assert back.class_names == ["cat", "dog"] and len(back.records) == 2
        x = next(r for r in back.records if r.file.name == "x.png")
        assert x.file.is_symlink() and x.file.resolve() == (img / "x.png").resolve()
        np.testing.assert_allclose(x.boxes, [[1.5, 2.0, 20.25, 28.0]], atol=1e-4)
        assert x.labels.tolist() == [1]
        assert next(r for r in back.records if r.file.name == "neg.png").boxes.shape == (0, 4)


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared BCCD data not present")
def test_write_yolo_bccd_reads_back_like_the_voc_original(tmp_path: Path) -> None:
    """The BCCD copy the detection benchmark gives Ultralytics holds the boxes we train on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoxesFixedWarning)
        voc = read_voc(BCCD, "val", class_names=BCCD_CLASSES)
    back = read_yolo(write_yolo({"val": voc}, tmp_path), "val")
    by_name = {r.file.name: r for r in back.records}
    assert len(by_name) == len(voc.records) == 87
    for rec in voc.records:
        got = by_name[rec.file.name]
        np.testing.assert_allclose(got.boxes, rec.boxes, atol=1e-3)  # 6-decimal text, 640 px
        np.testing.assert_array_equal(got.labels, rec.labels)


# --------------------------------------------------------------------------- sanitize
def test_sanitize_clips_drops_and_warns_once() -> None:
    def rec(i: int, boxes: list[list[float]]) -> DetectionRecord:
        return DetectionRecord(i, Path(f"im{i}.jpg"), 100, 50, boxes=boxes, labels=[0] * len(boxes))

    records = [
        rec(0, [[10, 10, 20, 20]]),  # untouched
        rec(1, [[-5, 10, 20, 60], [20, 10, 10, 30]]),  # clipped; x2 < x1 dropped
        rec(2, [[120, 10, 130, 20], [99.5, 10, 120, 20]]),  # outside; 0.5 px once clipped
        *(rec(i, [[0, 0, 0, 0]]) for i in range(3, 9)),  # six more files with a dropped box
    ]
    with pytest.warns(BoxesFixedWarning) as caught:
        out = sanitize_boxes(records, "unit", where=[f"f{i}.txt" for i in range(9)])
    assert len(caught) == 1
    w = caught[0].message
    assert w.fixes[:2] == [("f1.txt", 1, 1), ("f2.txt", 0, 2)] and len(w.fixes) == 8
    assert "1 box(es) clipped" in str(w) and "9 box(es) dropped" in str(w)
    assert "f1.txt, f2.txt, f3.txt, f4.txt, f5.txt and 3 more" in str(w)
    assert out[0] is records[0]
    np.testing.assert_array_equal(out[1].boxes, [[0, 10, 20, 50]])
    assert out[1].areas.tolist() == [800.0]  # area shrinks with the clipped box
    assert all(len(r.boxes) == 0 for r in out[2:])


def test_sanitize_uses_source_degenerate_mask() -> None:
    record = DetectionRecord(0, Path("a.jpg"), 10, 10, boxes=[[4, 4, 5, 5]], labels=[0])
    with pytest.warns(BoxesFixedWarning, match="a.jpg"):
        (out,) = sanitize_boxes([record], "unit", degenerate=[np.array([True])])
    assert len(out.boxes) == 0
