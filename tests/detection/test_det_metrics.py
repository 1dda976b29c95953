"""Detection evaluation checked against a direct pycocotools run on a COCO JSON file, plus
hand-worked F1-optimal precision/recall and confusion-matrix cases and a 2-process DDP gather."""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionzoo.detection.metrics import CONF_GRID, DetectionEvaluator
from visionzoo.detection.records import DetectionRecord

# Label order deliberately differs from the sorted id order; "fox" (20) has no ground truth.
CATEGORIES = [
    {"id": 7, "name": "dog"},
    {"id": 12, "name": "eel"},
    {"id": 3, "name": "cat"},
    {"id": 20, "name": "fox"},
]
CAT_IDS = [c["id"] for c in CATEGORIES]
NAMES = [c["name"] for c in CATEGORIES]
EMPTY_IMAGES = (4, 9)  # image positions without annotations


def _coco_dict() -> dict:
    """12 images; boxes from 12 to ~200 px (small, medium and large areas), segment areas below
    the box area (some in a smaller size range), two large crowd regions whose area differs
    from their box area."""
    rng = np.random.default_rng(0)
    images, anns = [], []

    def add(image_id: int, cat: int, bbox: list[float], area: float, crowd: int) -> None:
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": cat,
                "bbox": bbox,
                "area": area,
                "iscrowd": crowd,
            }
        )

    for i in range(12):
        w, h = int(rng.integers(240, 641)), int(rng.integers(240, 481))
        image_id = 100 + 3 * i
        images.append({"id": image_id, "width": w, "height": h, "file_name": f"{i}.jpg"})
        if i in EMPTY_IMAGES:
            continue
        for _ in range(int(rng.integers(1, 6))):
            side = int(rng.choice([12, 24, 48, 80, 150]))
            bw = int(min(side * rng.uniform(0.6, 1.4), w - 2))
            bh = int(min(side * rng.uniform(0.6, 1.4), h - 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cat = int(rng.choice(CAT_IDS[:3]))
            area = float(round(bw * bh * rng.uniform(0.5, 1.0)))
            add(image_id, cat, [float(x), float(y), float(bw), float(bh)], area, 0)
        if i in (1, 6):
            add(image_id, CAT_IDS[i % 3], [20.0, 30.0, 160.0, 120.0], 9000.0, 1)
        if i in (0, 3):  # the segment area, not the box area, decides small / medium / large
            add(image_id, CAT_IDS[2], [50.0, 60.0, 40.0, 40.0], 900.0, 0)
            add(image_id, CAT_IDS[0], [120.0, 110.0, 100.0, 100.0], 8000.0, 0)
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def _records(coco: dict) -> list[DetectionRecord]:
    by_image: dict[int, list[dict]] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    records = []
    for img in coco["images"]:
        anns = by_image[img["id"]]
        records.append(
            DetectionRecord(
                image_id=img["id"],
                file=Path(img["file_name"]),
                width=img["width"],
                height=img["height"],
                boxes=[[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                labels=[CAT_IDS.index(a["category_id"]) for a in anns],
                iscrowd=[a["iscrowd"] for a in anns],
                areas=[a["area"] for a in anns],
            )
        )
    return records


def _predictions(coco: dict) -> dict[int, dict[str, torch.Tensor]]:
    """Jittered hits, wrong classes, exact duplicates, detections inside crowd regions, random
    false positives on every image (the empty ones too) and 120 detections on one image (COCO
    keeps the top 100)."""
    rng = np.random.default_rng(1)
    per_image: dict[int, list[tuple[list[float], float, int]]] = {
        img["id"]: [] for img in coco["images"]
    }
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        label = CAT_IDS.index(ann["category_id"])
        dets = per_image[ann["image_id"]]
        if ann["iscrowd"]:
            for _ in range(3):
                cx, cy = x + rng.uniform(10, w - 10), y + rng.uniform(10, h - 10)
                dets.append(([cx - 8, cy - 8, cx + 8, cy + 8], rng.random(), label))
            continue
        for _ in range(int(rng.integers(0, 4))):
            jx, jy = rng.normal(0, 0.08 * w), rng.normal(0, 0.08 * h)
            jw, jh = max(w * rng.uniform(0.8, 1.2), 1), max(h * rng.uniform(0.8, 1.2), 1)
            cls = label if rng.random() < 0.8 else int(rng.integers(0, len(CAT_IDS)))
            dets.append(([x + jx, y + jy, x + jx + jw, y + jy + jh], rng.random(), cls))
        if dets and rng.random() < 0.3:
            dets.append((dets[-1][0], rng.random(), dets[-1][2]))
    for i, img in enumerate(coco["images"]):
        n_random = 120 if i == 2 else 2
        for _ in range(n_random):
            x, y = rng.uniform(0, img["width"] - 40), rng.uniform(0, img["height"] - 40)
            s = rng.uniform(5, 40)
            cls = 2 if i == 2 else int(rng.integers(0, len(CAT_IDS)))
            per_image[img["id"]].append(([x, y, x + s, y + s], rng.random(), cls))
    return {
        image_id: {
            "boxes": torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor([d[1] for d in dets], dtype=torch.float32),
            "labels": torch.tensor([d[2] for d in dets], dtype=torch.long),
        }
        for image_id, dets in per_image.items()
    }


def _coco_results(preds: dict[int, dict[str, torch.Tensor]]) -> list[dict]:
    out = []
    for image_id, p in preds.items():
        for box, score, label in zip(
            p["boxes"].double().tolist(),
            p["scores"].double().tolist(),
            p["labels"].tolist(),
            strict=True,
        ):
            x1, y1, x2, y2 = box
            bbox = [x1, y1, x2 - x1, y2 - y1]
            out.append(
                {"image_id": image_id, "category_id": CAT_IDS[label], "bbox": bbox, "score": score}
            )
    return out


def _direct(json_path: Path, results: list[dict], cat_id: int | None = None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_path))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        if cat_id is not None:
            ev.params.catIds = [cat_id]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    coco = _coco_dict()
    path = tmp_path_factory.mktemp("coco") / "instances.json"
    path.write_text(json.dumps(coco))
    return path, coco, _predictions(coco)


def _evaluate(coco: dict, preds: dict[int, dict[str, torch.Tensor]]) -> DetectionEvaluator:
    ev = DetectionEvaluator(_records(coco), NAMES, CAT_IDS)
    ids = list(preds)
    for start in range(0, len(ids), 5):
        batch = ids[start : start + 5]
        ev.update(batch, [preds[i] for i in batch])
    return ev


def test_matches_direct_pycocotools(dataset) -> None:
    path, coco, preds = dataset
    assert sum(a["iscrowd"] for a in coco["annotations"]) == 2
    ev = _evaluate(coco, preds)
    reference = _coco_results(preds)
    assert ev.results() == reference
    out = ev.compute()
    stats = _direct(path, reference)
    assert stats[0] > 0.05  # a meaningful, non-trivial score
    np.testing.assert_allclose(out["stats"], stats, rtol=0, atol=1e-6)
    keys = ["map", "map50", "map75", "map_small", "map_medium", "map_large"]
    np.testing.assert_allclose([out[k] for k in keys], stats[:6], rtol=0, atol=1e-6)
    assert out["mar_100"] == pytest.approx(stats[8], abs=1e-6)
    for label, cat_id in enumerate(CAT_IDS):
        per_class = _direct(path, reference, cat_id)
        expected = [math.nan if s == -1 else s for s in per_class[:2]]
        got = [out["ap_per_class"][label], out["ap50_per_class"][label]]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, equal_nan=True)
    assert math.isnan(out["ap_per_class"][3])
    for k in ("precision", "recall", "f1", "conf_best"):
        assert 0 < out[k] <= 1

    pr = ev.pr_curves()
    assert pr["recall"].shape == (101,) and pr["precision"].shape == (4, 101)
    np.testing.assert_allclose(pr["precision"].mean(1), out["ap50_per_class"], atol=1e-12)


def test_zero_predictions(dataset) -> None:
    _, coco, preds = dataset
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
    }
    ev = _evaluate(coco, dict.fromkeys(preds, empty))
    assert ev.results() == []
    out = ev.compute()
    assert out["stats"] == [0.0] * 12  # every area range holds ground truth
    np.testing.assert_array_equal(out["ap_per_class"], [0, 0, 0, math.nan])
    assert (out["precision"], out["recall"], out["f1"]) == (0.0, 0.0, 0.0)
    matrix = ev.confusion_matrix()
    per_class = np.bincount(
        [CAT_IDS.index(a["category_id"]) for a in coco["annotations"] if not a["iscrowd"]],
        minlength=4,
    )
    np.testing.assert_array_equal(matrix[4, :4], per_class)
    assert matrix.sum() == per_class.sum()


def test_compute_before_update_and_bad_input(dataset) -> None:
    _, coco, _ = dataset
    ev = DetectionEvaluator(_records(coco), NAMES, CAT_IDS)
    assert ev.compute()["stats"] == [-1.0] * 12  # no image evaluated
    with pytest.raises(KeyError, match="image_id 5"):
        ev.update([5], [_pred([], [], [])])
    with pytest.raises(ValueError, match="label 4"):
        ev.update([100], [_pred([[0, 0, 1, 1]], [1.0], [4])])
    with pytest.raises(ValueError, match="category ids"):
        DetectionEvaluator(_records(coco), NAMES, CAT_IDS[:3])


def _record(image_id: int, boxes: list, labels: list, crowd: list | None = None) -> DetectionRecord:
    return DetectionRecord(
        image_id, Path(f"{image_id}.jpg"), 100, 100, boxes=boxes, labels=labels, iscrowd=crowd or []
    )


def _pred(boxes: list, scores: list, labels: list) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float64),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


def test_f1_optimal_precision_recall_by_hand() -> None:
    """Class 0: 2 boxes, detections hit (g900), miss (g800), hit (g700), plus one at 0.95 on a
    crowd region that COCO ignores. Class 1: 1 box, hit (g600), miss (g300).

    At conf g600 class 0 has P = 2/3, R = 1, F1 = 0.8 and class 1 P = R = F1 = 1; above it
    class 1's recall drops to 0 and below it class 1's precision falls towards 1/2, while class
    0 never exceeds 0.8. So the mean F1 peaks at g600: P = 5/6, R = 1, F1 = 0.9."""
    g = CONF_GRID
    records = [
        _record(1, [[10, 10, 30, 30], [50, 50, 70, 70], [0, 80, 100, 100]], [0, 0, 0], [0, 0, 1]),
        _record(2, [[20, 20, 60, 60]], [1]),
    ]
    ev = DetectionEvaluator(records, ["a", "b"], [1, 2])
    ev.update(
        [1, 2],
        [
            _pred(
                [[10, 10, 30, 30], [80, 10, 95, 25], [50, 50, 70, 70], [5, 85, 15, 95]],
                [g[900], g[800], g[700], 0.95],
                [0, 0, 0, 0],
            ),
            _pred([[20, 20, 60, 60], [70, 70, 90, 90]], [g[600], g[300]], [1, 1]),
        ],
    )
    out = ev.compute()
    assert out["conf_best"] == g[600]
    assert out["precision"] == pytest.approx(5 / 6, abs=1e-12)
    assert out["recall"] == pytest.approx(1.0, abs=1e-12)
    assert out["f1"] == pytest.approx(0.9, abs=1e-12)


def test_confusion_matrix_by_hand() -> None:
    """Rows predicted, columns true, index 3 background; confidence 0.25, IoU 0.45."""
    records = [
        _record(
            1,
            [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60], [70, 70, 100, 100]],
            [0, 1, 2, 0],
            [0, 0, 0, 1],
        ),
        _record(2, [], []),
        _record(3, [[0, 0, 10, 10], [2, 0, 12, 10]], [0, 1]),
    ]
    ev = DetectionEvaluator(records, ["a", "b", "c"], [1, 2, 3])
    preds = [
        _pred(
            [
                [0, 0, 10, 10],  # hits the class-0 box: (0, 0)
                [20, 20, 40, 40],  # class 2 on the class-1 box (IoU 1): (2, 1)
                [21, 21, 40, 40],  # IoU 0.90 with the same box, already taken: (1, bg)
                [80, 80, 90, 90],  # inside the crowd region: not counted
                [0, 50, 5, 55],  # on nothing: (1, bg)
                [50, 50, 60, 60],  # would hit class 2 but scores below 0.25: (bg, 2)
            ],
            [0.9, 0.8, 0.7, 0.6, 0.9, 0.2],
            [0, 2, 1, 0, 1, 0],
        ),
        _pred([[10, 10, 20, 20]], [0.5], [2]),  # image without boxes: (2, bg)
        # YOLOv5 matching: A (IoU 1 with L1, 0.67 with L2) and B (0.90 with L1, 0.74 with L2)
        # both keep L1 as their best box; L1 keeps A, so B is background and L2 is missed,
        # although a one-to-one assignment could have paired B with L2.
        _pred([[0, 0, 10, 10], [0.5, 0, 10.5, 10]], [0.9, 0.8], [0, 1]),
    ]
    ev.update([1, 2, 3], preds)
    ev.compute()
    expected = [
        [2, 0, 0, 0],
        [0, 0, 0, 3],
        [0, 1, 0, 1],
        [0, 1, 1, 0],
    ]
    np.testing.assert_array_equal(ev.confusion_matrix(), expected)


def _ddp_worker(rank: int, world: int, init_file: str, payload: bytes, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        records, batches = pickle.loads(payload)
        ev = DetectionEvaluator(records, NAMES, CAT_IDS)
        for image_id, pred in batches[rank]:
            ev.update([image_id], [pred])
        out = {**ev.compute(), "confusion": ev.confusion_matrix()}
        (Path(out_dir) / f"rank{rank}.pkl").write_bytes(pickle.dumps(out))
    finally:
        dist.destroy_process_group()


def test_ddp_gather_matches_single_process(dataset, tmp_path: Path) -> None:
    _, coco, preds = dataset
    single = _evaluate(coco, preds)
    expected = {**single.compute(), "confusion": single.confusion_matrix()}
    items = list(preds.items())
    # Rank 1 also sees rank 0's first image again, as a padding DistributedSampler would.
    batches = [items[0::2], [*items[1::2], items[0]]]
    payload = pickle.dumps((_records(coco), batches))
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / "rendezvous"), payload, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    for rank in range(2):
        got = pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes())
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-12, equal_nan=True)
