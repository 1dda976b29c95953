"""Cascade R-CNN: each stage samples at its own IoU threshold and regresses against its own box
coder, the cascade trains (two images overfit), inference averages the stages' scores."""

from __future__ import annotations

import torch
from test_det_faster_rcnn import TINY, _scene
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from visionzoo import create_model


def test_stages_match_at_their_own_iou() -> None:
    model = create_model("cascade_rcnn", num_classes=2, **TINY)
    heads = model.roi_heads
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    # IoU with the box: 0.55 (fg for stage 0 only), 0.65 (stages 0-1), 0.8 (all stages)
    boxes = torch.tensor([[0.0, 0.0, 100.0, 55.0], [0.0, 0.0, 100.0, 65.0], [0, 0, 100, 80.0]])
    assert torch.allclose(box_iou(boxes, gt)[:, 0], torch.tensor([0.55, 0.65, 0.8]))
    targets = [{"boxes": gt, "labels": torch.tensor([2])}]
    for stage, want in enumerate(([2, 2, 2], [0, 2, 2], [0, 0, 2])):
        rois, labels, deltas = heads.sample(stage, [boxes], targets)
        got = {tuple(r.tolist()): int(lab) for r, lab in zip(rois[0], labels, strict=True)}
        for box, label in zip(boxes, want, strict=True):
            assert got[tuple(box.tolist())] == label
        assert got[(0.0, 0.0, 100.0, 100.0)] == 2  # the ground truth joins every stage
        # regression targets in the stage's own coder (10/10/5/5, 20/20/10/10, 30/30/15/15)
        coder = BoxCoder((10.0 * (stage + 1),) * 2 + (5.0 * (stage + 1),) * 2)
        assert torch.allclose(deltas, coder.encode_single(gt.expand(len(rois[0]), 4), rois[0]))


def test_training_overfits_two_images() -> None:
    torch.manual_seed(0)
    images, targets = _scene()
    model = create_model("cascade_rcnn", num_classes=2, **TINY).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses = model(images, targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["loss"].item())
    assert {f"loss_classifier_s{s}" for s in range(3)} <= set(losses)
    assert sum(history[-3:]) / 3 < 0.5 * history[0]
    with torch.no_grad():
        preds = model.eval()(images)
    for pred, target in zip(preds, targets, strict=True):
        iou = box_iou(pred["boxes"][:1], target["boxes"])[0]
        best = int(iou.argmax())
        assert iou[best] > 0.5
        assert pred["labels"][0] == target["labels"][best]
