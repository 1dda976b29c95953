"""COCO box mAP (pycocotools) plus the F1-optimal precision/recall, confusion matrix and PR curves
that YOLO training reports, computed from one set of accumulated predictions."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from visionzoo.core.gathered import GatheredMetric, SampleKey
from visionzoo.detection.records import DetectionRecord

# Summary keys in the order of ``COCOeval.stats``; stats 6-7 (AR@1, AR@10) and the per-area
# recalls stay available in the ``stats`` list.
_STATS = {"map": 0, "map50": 1, "map75": 2, "map_small": 3, "map_medium": 4, "map_large": 5}
_STATS["mar_100"] = 8
CONF_GRID = np.linspace(0, 1, 1000)  # confidence thresholds of the F1 search (Ultralytics)

# One image's predictions: boxes [K, 4] xyxy float64, scores [K] float64, labels [K] int64.
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def _quiet() -> contextlib.AbstractContextManager:
    """pycocotools prints progress on every call."""
    return contextlib.redirect_stdout(io.StringIO())


def _mean_valid(precision: np.ndarray) -> float:
    """pycocotools' average: mean over entries > -1; NaN where there are none (no GT)."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy to COCO's xywh, in float64 so the widths are exact differences."""
    boxes = boxes.astype(np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


class DetectionEvaluator(GatheredMetric[Prediction]):
    """Accumulates per-image predictions and scores them against ``records``.

    Boxes are matched by pycocotools (``COCOeval``, iouType ``bbox``). Crowd and difficult boxes
    are written as ``iscrowd=1``, so a detection on them is neither a hit nor a false positive.
    Only images passed to ``update`` are evaluated (``params.imgIds``), as in torchvision's and
    detectron2's COCO evaluators; an image with no detections must still be passed, with empty
    tensors. An image passed twice (``DistributedSampler`` pads ranks with repeats) counts once,
    with its first predictions; ``compute`` gathers the images of all ranks (``GatheredMetric``).

    ``compute`` also fills the confusion matrix (``confusion_matrix``) and the PR curves
    (``pr_curves``), which survive ``reset`` until the next ``compute``.
    """

    def __init__(
        self,
        records: list[DetectionRecord],
        class_names: list[str],
        category_ids: list[int],
        conf_matrix_conf: float = 0.25,
        conf_matrix_iou: float = 0.45,
    ) -> None:
        if len(class_names) != len(category_ids):
            raise ValueError(
                f"{len(class_names)} class names but {len(category_ids)} category ids: "
                "category_ids[k] must give the dataset's id of class k"
            )
        super().__init__()
        self.class_names = list(class_names)
        self.category_ids = [int(c) for c in category_ids]
        self.conf_matrix_conf = conf_matrix_conf  # detections scoring above it enter the matrix
        self.conf_matrix_iou = conf_matrix_iou  # IoU above which a detection matches a box
        self.records = {int(r.image_id): r for r in records}
        if len(self.records) != len(records):
            raise ValueError("records hold duplicate image_id values; each image needs its own id")
        self.gt = self._coco_ground_truth(records)
        self._confusion: np.ndarray | None = None
        self._pr: dict[str, np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _coco_ground_truth(self, records: list[DetectionRecord]) -> COCO:
        images, annotations = [], []
        for r in records:
            images.append({"id": int(r.image_id), "width": r.width, "height": r.height})
            xywh = _xywh(r.boxes).tolist()
            for i in range(len(r.boxes)):
                annotations.append(
                    {
                        "id": len(annotations) + 1,  # 0 would read as "unmatched" in COCOeval
                        "image_id": int(r.image_id),
                        "category_id": self.category_ids[int(r.labels[i])],
                        "bbox": xywh[i],
                        "area": float(r.areas[i]),
                        "iscrowd": int(r.ignored[i]),
                    }
                )
        categories = [
            {"id": c, "name": n} for c, n in zip(self.category_ids, self.class_names, strict=True)
        ]
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        with _quiet():
            gt.createIndex()
        return gt

    def update(
        self, image_ids: list[int] | torch.Tensor, preds: list[dict[str, torch.Tensor]]
    ) -> None:
        """Add one batch. ``preds[i]`` holds ``boxes`` [K, 4] xyxy in the original pixels of image
        ``image_ids[i]``, ``scores`` [K] and ``labels`` [K] (contiguous ``0..C-1``)."""
        if len(image_ids) != len(preds):
            raise ValueError(f"{len(image_ids)} image ids but {len(preds)} predictions")
        for image_id, pred in zip(image_ids, preds, strict=True):
            image_id = int(image_id)
            if image_id not in self.records:
                raise KeyError(f"image_id {image_id} is not among the evaluator's records")
            boxes = pred["boxes"].detach().cpu().double().numpy().reshape(-1, 4)
            scores = pred["scores"].detach().cpu().double().numpy().reshape(-1)
            labels = pred["labels"].detach().cpu().long().numpy().reshape(-1)
            if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"image {image_id}: predicted label {int(labels.max())} outside "
                    f"0..{self.num_classes - 1}"
                )
            self._add(image_id, (boxes, scores, labels))

    def _to_results(self, preds: dict[SampleKey, Prediction]) -> list[dict[str, Any]]:
        out = []
        for image_id, (boxes, scores, labels) in preds.items():
            for bbox, score, label in zip(
                _xywh(boxes).tolist(), scores.tolist(), labels.tolist(), strict=True
            ):
                out.append(
                    {
                        "image_id": image_id,
                        "category_id": self.category_ids[label],
                        "bbox": bbox,
                        "score": score,
                    }
                )
        return out

    def results(self) -> list[dict[str, Any]]:
        """This process's predictions as COCO results (dataset category ids, ``bbox`` xywh)."""
        return self._to_results(self.local_samples())

    def compute(self) -> dict[str, Any]:
        """Score everything accumulated (on all ranks, when distributed).

        Returns the pycocotools summary (``map`` = AP@[.5:.95], ``map50``, ``map75``,
        ``map_small/medium/large``, ``mar_100``; -1 where no GT falls in that range, as
        pycocotools prints), all 12 ``stats``, ``ap_per_class`` / ``ap50_per_class`` (NaN for
        classes without GT) and ``precision``, ``recall``, ``f1`` at ``conf_best``.
        """
        preds = self.gathered()
        results = self._to_results(preds)
        with _quiet():
            dt = self.gt.loadRes(results) if results else self._empty_results()
            ev = COCOeval(self.gt, dt, "bbox")
            ev.params.imgIds = list(preds)  # sorted by gathered()
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out: dict[str, Any] = {k: float(ev.stats[i]) for k, i in _STATS.items()}
        out["stats"] = [float(s) for s in ev.stats]
        self.scored = results  # what was scored: COCO results for COCO.loadRes
        # precision: [T iou, R recall, K class, A area, M maxDets]; area 'all', 100 detections.
        precision = ev.eval["precision"][:, :, :, 0, -1]
        k_index = [ev.params.catIds.index(c) for c in self.category_ids]
        out["ap_per_class"] = [_mean_valid(precision[:, :, k]) for k in k_index]
        out["ap50_per_class"] = [_mean_valid(precision[0, :, k]) for k in k_index]
        out.update(self._best_f1(ev, k_index))
        curves = precision[0][:, k_index].T
        self._pr = {
            "recall": np.asarray(ev.params.recThrs, dtype=np.float64),
            "precision": np.where(curves > -1, curves, np.nan),
            "ap50": np.asarray(out["ap50_per_class"], dtype=np.float64),
        }
        self._confusion = self._confusion_matrix(preds)
        return out

    def _empty_results(self) -> COCO:
        """What ``loadRes`` would build for no detections (it fails on an empty list)."""
        dt = COCO()
        dt.dataset = {
            "images": list(self.gt.dataset["images"]),
            "categories": list(self.gt.dataset["categories"]),
            "annotations": [],
        }
        dt.createIndex()
        return dt

    def _best_f1(self, ev: COCOeval, k_index: list[int]) -> dict[str, float]:
        """Precision, recall and F1 at the confidence maximising the class-mean F1 (Ultralytics
        ``ap_per_class``, without its F1 smoothing), from COCOeval's own matches at IoU 0.5,
        area 'all', 100 detections per image; detections it ignores (on crowd) are dropped.
        Classes without GT are left out of the means."""
        n_img = len(ev.params.imgIds)
        n_area = len(ev.params.areaRng)
        area_all = ev.params.areaRngLbl.index("all")
        p_curve, r_curve = [], []
        for k in k_index:
            start = (k * n_area + area_all) * n_img
            entries = [e for e in ev.evalImgs[start : start + n_img] if e is not None]
            n_gt = sum(int(np.count_nonzero(e["gtIgnore"] == 0)) for e in entries)
            if n_gt == 0:
                continue
            scores = np.concatenate([np.asarray(e["dtScores"], dtype=np.float64) for e in entries])
            hit = np.concatenate([e["dtMatches"][0] > 0 for e in entries])
            keep = ~np.concatenate([e["dtIgnore"][0].astype(bool) for e in entries])
            scores, hit = scores[keep], hit[keep]
            if scores.size == 0:
                p_curve.append(np.zeros_like(CONF_GRID))
                r_curve.append(np.zeros_like(CONF_GRID))
                continue
            order = np.argsort(-scores, kind="mergesort")
            scores, hit = scores[order], hit[order]
            tp = np.cumsum(hit)
            recall = tp / n_gt
            precision = tp / np.arange(1, len(tp) + 1)
            # Above the highest score nothing is detected: recall 0, precision 1.
            r_curve.append(np.interp(-CONF_GRID, -scores, recall, left=0))
            p_curve.append(np.interp(-CONF_GRID, -scores, precision, left=1))
        if not p_curve:
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "conf_best": 0.0}
        p, r = np.stack(p_curve), np.stack(r_curve)
        f1 = _safe_div(2 * p * r, p + r)
        best = int(f1.mean(0).argmax())
        return {
            "precision": float(p[:, best].mean()),
            "recall": float(r[:, best].mean()),
            "f1": float(f1[:, best].mean()),
            "conf_best": float(CONF_GRID[best]),
        }

    def _confusion_matrix(self, preds: dict[SampleKey, Prediction]) -> np.ndarray:
        """YOLOv5 ``ConfusionMatrix``: rows = predicted class, columns = true class, index C =
        background (last row: missed boxes, last column: false detections).

        Detections scoring above ``conf_matrix_conf`` are matched class-agnostically to boxes
        with IoU above ``conf_matrix_iou``: each detection keeps its best-IoU box, then each box
        its best-IoU detection. Unlike YOLOv5 (fixed in Ultralytics 8), unmatched detections
        count as false even when nothing in the image matched. An unmatched detection covering
        a crowd/difficult box by more than the IoU threshold (COCO's crowd IoU: intersection
        over detection area) is not counted at all, as in COCOeval.
        """
        c = self.num_classes
        matrix = np.zeros((c + 1, c + 1), dtype=np.int64)
        for image_id, (boxes, scores, labels) in preds.items():
            record = self.records[image_id]
            keep = scores > self.conf_matrix_conf
            boxes, labels = boxes[keep], labels[keep]
            regular = ~record.ignored
            gt_boxes = record.boxes[regular].astype(np.float64)
            gt_labels = record.labels[regular]
            matched_gt = np.full(len(gt_boxes), -1)
            matched_dt = np.zeros(len(boxes), dtype=bool)
            if len(gt_boxes) and len(boxes):
                iou = box_iou(torch.from_numpy(gt_boxes), torch.from_numpy(boxes)).numpy()
                g, d = np.nonzero(iou > self.conf_matrix_iou)
                v = iou[g, d]
                for unique_over in ("dt", "gt"):
                    order = np.argsort(-v, kind="stable")
                    g, d, v = g[order], d[order], v[order]
                    _, first = np.unique(d if unique_over == "dt" else g, return_index=True)
                    g, d, v = g[first], d[first], v[first]
                matched_gt[g] = d
                matched_dt[d] = True
            for j, true in enumerate(gt_labels):
                matrix[labels[matched_gt[j]] if matched_gt[j] >= 0 else c, true] += 1
            false = ~matched_dt
            ignored = record.boxes[record.ignored].astype(np.float64)
            if false.any() and len(ignored):
                crowd = [1] * len(ignored)
                ioa = coco_mask.iou(_xywh(boxes), _xywh(ignored), crowd).reshape(len(boxes), -1)
                false &= ~(ioa > self.conf_matrix_iou).any(1)
            np.add.at(matrix, (labels[false], c), 1)
        return matrix

    def confusion_matrix(self) -> np.ndarray:
        """``[C+1, C+1]`` counts from the last ``compute`` (rows predicted, columns true)."""
        if self._confusion is None:
            raise RuntimeError("call compute() before confusion_matrix()")
        return self._confusion

    def pr_curves(self) -> dict[str, np.ndarray]:
        """COCO's interpolated PR curves at IoU 0.5 from the last ``compute``: ``recall`` [101]
        (the recall grid), ``precision`` [C, 101] (NaN rows for classes without GT) and
        ``ap50`` [C]."""
        if self._pr is None:
            raise RuntimeError("call compute() before pr_curves()")
        return self._pr
