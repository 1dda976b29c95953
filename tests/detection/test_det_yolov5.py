"""YOLOv5: published sizes, decoding, target assignment, AutoAnchor, training, ONNX export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from det_helpers import blob_batch, overfit
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import box_iou

from visionzoo.core.ema import ModelEMA
from visionzoo.detection.models.autoanchor import anchor_metrics, check_anchors
from visionzoo.detection.models.yolov5 import YOLOv5
from visionzoo.detection.records import DetectionRecord, DetectionSource


@pytest.mark.parametrize(("size", "params_m", "gflops"), [("n", 1.9, 4.5), ("s", 7.2, 16.5)])
def test_published_params_and_gflops(size: str, params_m: float, gflops: float) -> None:
    """Ultralytics' model table at 640 px, 80 classes (GFLOPs = 2 × multiply-adds)."""
    model = YOLOv5(size=size, num_classes=80).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.predict_raw(torch.zeros(1, 3, 640, 640))
    assert params == pytest.approx(params_m, rel=0.03)
    assert counter.get_total_flops() / 1e9 == pytest.approx(gflops, rel=0.03)


def test_decode_zero_logits_gives_cell_centres_and_anchors() -> None:
    """With all-zero outputs every box sits at its cell centre with its anchor's size."""
    model = YOLOv5(size="n", num_classes=2).eval()
    for conv in model.head:
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    with torch.no_grad():
        boxes, scores = model.predict_raw(torch.rand(1, 3, 64, 96))
    expected = []
    for level, stride in enumerate((8, 16, 32)):
        h, w = 64 // stride, 96 // stride
        for a in range(3):
            aw, ah = model.anchors[level, a].tolist()
            for y in range(h):
                for x in range(w):
                    cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                    expected.append([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2])
    assert torch.allclose(boxes[0], torch.tensor(expected), atol=1e-4)
    assert torch.allclose(scores, torch.full_like(scores, 0.25))


def _reference_assignment(model: YOLOv5, shapes, targets):
    """Loop-by-loop restatement of YOLOv5's assignment rule: anchors with w/h ratios within
    anchor_t; own cell plus the x- and y-neighbour nearest the centre (not on the border)."""
    out = set()
    for level, (h, w) in enumerate(shapes):
        stride = float(model.strides[level])
        for img, cls, cx, cy, bw, bh in targets.tolist():
            gx, gy, gw, gh = cx / stride, cy / stride, bw / stride, bh / stride
            for a, (aw, ah) in enumerate((model.anchors[level] / stride).tolist()):
                rw, rh = gw / aw, gh / ah
                if max(rw, 1 / rw, rh, 1 / rh) >= model.anchor_t:
                    continue
                cells = [(int(gx), int(gy))]
                fx, fy = gx % 1, gy % 1
                if fx < 0.5 and gx > 1:
                    cells.append((int(gx) - 1, int(gy)))
                if fy < 0.5 and gy > 1:
                    cells.append((int(gx), int(gy) - 1))
                if fx > 0.5 and w - gx > 1:
                    cells.append((int(gx) + 1, int(gy)))
                if fy > 0.5 and h - gy > 1:
                    cells.append((int(gx), int(gy) + 1))
                for i, j in cells:
                    out.add((level, int(img), a, j, i, int(cls)))
    return out


def test_target_assignment_matches_the_rule() -> None:
    model = YOLOv5(size="n", num_classes=3)
    rng = np.random.default_rng(0)
    rows = []
    for img in range(3):
        for _ in range(5):
            w, h = rng.uniform(6, 200, size=2)
            cx, cy = rng.uniform(w / 2, 256 - w / 2), rng.uniform(h / 2, 192 - h / 2)
            rows.append([img, rng.integers(0, 3), cx, cy, w, h])
    targets = torch.tensor(rows, dtype=torch.float32)
    shapes = [(192 // s, 256 // s) for s in (8, 16, 32)]
    got = set()
    for level, (b, a, gj, gi, cls, tbox, _anchor) in enumerate(
        model.build_targets(shapes, targets)
    ):
        got |= {
            (level, *t)
            for t in zip(
                b.tolist(), a.tolist(), gj.tolist(), gi.tolist(), cls.tolist(), strict=True
            )
        }
        # the regression target is the centre offset from the assigned cell, in (-0.5, 1.5)
        assert ((tbox[:, :2] > -0.5) & (tbox[:, :2] < 1.5)).all()
    assert got == _reference_assignment(model, shapes, targets)
    assert len(got) > 20


def test_training_overfits_two_images() -> None:
    torch.manual_seed(0)
    # cls_gain 40 undoes YOLOv5's classes/80 scaling, so two classes are learnt in few steps
    model = YOLOv5(size="n", num_classes=2, img_size=128, cls_gain=40.0)
    for m in model.modules():  # BN statistics must settle within a few dozen steps
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.3
    images, targets = blob_batch()
    history = overfit(model, images, targets, steps=40, lr=3e-3)
    assert history[-1] < 0.5 * history[0]
    model.eval()
    with torch.no_grad():
        preds = model(images)
    for p, t in zip(preds, targets, strict=True):
        assert p["labels"][0] == t["labels"][0]
        assert box_iou(p["boxes"][:1], t["boxes"])[0, 0] > 0.5


def test_empty_targets_give_finite_objectness_only_loss() -> None:
    model = YOLOv5(size="n", num_classes=2)
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = model(torch.rand(2, 3, 64, 64), empty)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
    assert losses["loss_box"] == 0 and losses["loss_cls"] == 0


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="n, s, m, l, x"):
        YOLOv5(size="q")


def _source(sizes: list[tuple[float, float]]) -> DetectionSource:
    recs = [
        DetectionRecord(i, f"{i}.jpg", 640, 640, [[10, 10, 10 + w, 10 + h]], [0])
        for i, (w, h) in enumerate(sizes)
    ]
    return DetectionSource(recs, ["a"], [1])


def test_anchor_metrics_match_a_direct_count() -> None:
    rng = np.random.default_rng(1)
    wh = rng.uniform(2, 300, size=(50, 2))
    anchors = np.array([[10, 13], [62, 45], [373, 326]], dtype=float)
    fits = 0
    above = 0
    for w, h in wh:
        ratios = [min(w / aw, aw / w, h / ah, ah / h) for aw, ah in anchors]
        fits += max(ratios) > 0.25
        above += sum(r > 0.25 for r in ratios)
    bpr, aat = anchor_metrics(wh, anchors, thr=4.0)
    assert bpr == pytest.approx(fits / 50)
    assert aat == pytest.approx(above / 50)


def test_autoanchor_refits_bad_anchors_and_keeps_good_ones() -> None:
    rng = np.random.default_rng(0)
    sizes = [tuple(rng.uniform(150, 400, size=2)) for _ in range(60)]
    model = YOLOv5(size="n", num_classes=1, anchors=[[[2, 2]] * 3] * 3)
    wh = np.array(sizes)
    before = anchor_metrics(wh, model.anchors.reshape(-1, 2).numpy())[0]
    assert before < 0.98
    assert check_anchors(model, _source(sizes), img_size=640)
    after = anchor_metrics(wh, model.anchors.reshape(-1, 2).numpy())[0]
    assert after > 0.98
    areas = model.anchors.reshape(-1, 2).prod(1)
    assert torch.all(areas[1:] >= areas[:-1])  # small anchors on the fine level
    good = YOLOv5(size="n", num_classes=1)
    kept = good.anchors.clone()
    assert not check_anchors(good, _source([(40, 50), (100, 80), (300, 200)]), img_size=640)
    assert torch.equal(good.anchors, kept)


def test_ema_follows_the_published_update() -> None:
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1 / 2.0))
    assert torch.allclose(ema.module.weight, d * start + (1 - d) * model.weight)


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from visionzoo.detection.export import check_onnx, export_onnx

    model = YOLOv5(size="n", num_classes=3).eval()
    path = export_onnx(model, tmp_path / "y.onnx", (96, 128))
    assert check_onnx(model, path, torch.rand(2, 3, 96, 128)) < 1e-4
