"""Faster R-CNN: no resizing, training, empty images, OHEM, local weights (torchvision parity:
test_det_weights.py, through its weights files)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops.misc import FrozenBatchNorm2d

from visionzoo import create_model
from visionzoo.detection.models.faster_rcnn import OHEMRoIHeads

# A CPU-sized model: resnet18 strides 8-32, narrow FPN and box head, few proposals and RoIs.
TINY = {
    "backbone": "resnet18",
    "fpn_levels": 3,
    "fpn_channels": 64,
    "box_head_dim": 128,
    "anchor_sizes": ((16,), (32,), (64,), (128,)),
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 50,
    "box_batch_size_per_image": 32,
}


def _scene() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two dark 128×128 images with bright 6 px frames: yellow = class 0, cyan = class 1."""
    images = torch.full((2, 3, 128, 128), 0.1)
    boxes = [
        torch.tensor([[20.0, 24.0, 60.0, 70.0]]),
        torch.tensor([[70.0, 10, 110, 50], [16, 72, 56, 116]]),
    ]
    labels = [torch.tensor([0]), torch.tensor([1, 0])]
    colours = torch.tensor([[0.9, 0.9, 0.2], [0.2, 0.9, 0.9]])
    for img, bs, ls in zip(images, boxes, labels, strict=True):
        for (x1, y1, x2, y2), c in zip(bs.long().tolist(), ls.tolist(), strict=True):
            img[:, y1:y2, x1:x2] = colours[c].view(3, 1, 1)
            img[:, y1 + 6 : y2 - 6, x1 + 6 : x2 - 6] = 0.1
    return images, [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]


def test_no_resize_and_boxes_in_input_pixels() -> None:
    """The encoder sees the input at its own size and output boxes lie inside it, whatever the
    aspect ratio (torchvision's default transform would rescale to 800 px)."""
    model = create_model("faster_rcnn", num_classes=3, **TINY).eval()
    seen = []
    model.backbone.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    images = torch.rand(2, 3, 64, 160)
    with torch.no_grad():
        preds = model(images)
    assert seen == [torch.Size((2, 3, 64, 160))]
    boxes = torch.cat([p["boxes"] for p in preds])
    assert len(boxes) > 0
    assert boxes[:, 2].max() <= 160 and boxes[:, 3].max() <= 64 and boxes.min() >= 0
    targets = [{"boxes": torch.tensor([[3.0, 5, 150, 60]]), "labels": torch.tensor([1])}]
    image_list, moved = model.transform(list(images[:1]), targets)
    assert image_list.image_sizes == [(64, 160)]
    assert torch.equal(moved[0]["boxes"], targets[0]["boxes"])


def test_training_overfits_two_images() -> None:
    """Adam on two images: the loss falls by more than half and each image's top detection has
    IoU > 0.5 with a ground-truth box of the same class, in input pixels."""
    torch.manual_seed(0)
    images, targets = _scene()
    model = create_model("faster_rcnn", num_classes=2, **TINY).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses = model(images, targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["loss"].item())
    parts = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert set(losses) == {"loss"} | parts
    assert sum(history[-3:]) / 3 < 0.5 * history[0]
    with torch.no_grad():
        preds = model.eval()(images)
    for pred, target in zip(preds, targets, strict=True):
        iou = box_iou(pred["boxes"][:1], target["boxes"])[0]
        best = int(iou.argmax())
        assert iou[best] > 0.5
        assert pred["labels"][0] == target["labels"][best]


def test_empty_targets_give_finite_losses() -> None:
    """No boxes, or only a box without area (which torchvision would refuse), is background."""
    model = create_model("faster_rcnn", num_classes=2, **TINY).train()
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}
    flat = {"boxes": torch.tensor([[10.0, 20, 30, 20]]), "labels": torch.tensor([1])}
    losses = model(torch.rand(2, 3, 64, 64), [empty, flat])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0
    losses["loss"].backward()
    assert model.rpn.head.cls_logits.weight.grad.abs().sum() > 0


def test_mode_and_targets_must_agree() -> None:
    model = create_model("faster_rcnn", num_classes=2, **TINY)
    with pytest.raises(ValueError, match="train mode"):
        model.train()(torch.rand(1, 3, 64, 64))


def test_ohem_keeps_the_hardest_rois() -> None:
    """Per image, the RoIs trained on are the top-k of all candidates (proposals + ground truth)
    by their Fast R-CNN loss, each computed alone with torchvision's ``fastrcnn_loss``; the
    training loss is the mean over them. Image 1 has no objects."""
    torch.manual_seed(0)
    k, weights = 8, (10.0, 10.0, 5.0, 5.0)
    heads = OHEMRoIHeads(
        MultiScaleRoIAlign(["0"], 7, 2),
        TwoMLPHead(8 * 49, 32),
        FastRCNNPredictor(32, 3),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=k,
        positive_fraction=0.25,
        bbox_reg_weights=weights,
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
    ).train()
    features = {"0": torch.randn(2, 8, 16, 16)}
    shapes = [(64, 64), (64, 64)]
    gt = torch.tensor([[8.0, 8, 30, 40], [30, 20, 60, 50]])
    targets = [
        {"boxes": gt, "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    xy = torch.rand(2, 30, 2) * 40
    proposals = [torch.cat((xy, xy + 4 + torch.rand(2, 30, 2) * 20), -1)[i] for i in range(2)]
    proposals[0][:10] = gt.repeat(5, 1) + torch.randn(10, 4)  # some foreground RoIs

    expected, total, count = [], 0.0, 0
    coder = BoxCoder(weights)
    for i, (p, t) in enumerate(zip(proposals, targets, strict=True)):
        cands = torch.cat((p, t["boxes"]))
        labels, reg = torch.zeros(len(cands), dtype=torch.long), torch.zeros(len(cands), 4)
        if len(t["boxes"]):
            iou, j = box_iou(cands, t["boxes"]).max(1)
            fg = iou >= 0.5
            labels[fg] = t["labels"][j[fg]]
            reg[fg] = coder.encode_single(t["boxes"][j[fg]], cands[fg])
        only_this_image = [cands if n == i else cands[:0] for n in range(2)]
        with torch.no_grad():
            logits, deltas = heads.box_predictor(
                heads.box_head(heads.box_roi_pool(features, only_this_image, shapes))
            )
        one = [slice(r, r + 1) for r in range(len(cands))]
        loss = torch.stack(
            [sum(fastrcnn_loss(logits[r], deltas[r], [labels[r]], [reg[r]])) for r in one]
        )
        top = loss.topk(k)
        expected.append(cands[top.indices])
        total, count = total + float(top.values.sum()), count + k

    with torch.no_grad():
        rois, labels, _ = heads.select_hard_examples(features, proposals, shapes, targets)
        _, losses = heads(features, proposals, shapes, targets)
    for got, want in zip(rois, expected, strict=True):
        assert got.shape == (k, 4)
        assert torch.allclose(got, want)
    assert labels[0].max() > 0 and labels[1].max() == 0
    assert float(sum(losses.values())) == pytest.approx(total / count, rel=1e-4)


def test_ohem_model_trains() -> None:
    torch.manual_seed(0)
    model = create_model("faster_rcnn", num_classes=2, ohem=True, **TINY).train()
    assert isinstance(model.roi_heads, OHEMRoIHeads)
    images, targets = _scene()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert len(model.eval()(images)) == 2


def test_pretrained_file_is_loaded_with_frozen_bn_and_early_stages(tmp_path) -> None:
    """A full timm classification state dict loads into the encoder; BatchNorm is frozen and
    the stem and layer1 stop training (3 trainable stages); from scratch everything trains."""
    torch.manual_seed(123)
    ref = timm.create_model("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    torch.manual_seed(0)  # a different init, so equality can only come from the file
    model = create_model("faster_rcnn", num_classes=2, pretrained_file=str(path), **TINY)
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, ref.conv1.weight)
    assert torch.equal(body.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert torch.equal(body.layer3[0].bn1.running_var, ref.layer3[0].bn1.running_var)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    trains = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trains == {"layer2", "layer3", "layer4"}
    scratch = create_model("faster_rcnn", num_classes=2, **TINY)
    assert not torch.equal(scratch.backbone.body.conv1.weight, ref.conv1.weight)
    assert isinstance(scratch.backbone.body.bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in scratch.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trainable_layers": 6}, "0..5"),
        ({"anchor_sizes": ((32,), (64,))}, "fpn_levels"),
        ({"fpn_levels": 6}, "fewer feature stages"),
    ],
)
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("faster_rcnn", num_classes=2, **{**TINY, **kwargs})
