"""Cascade R-CNN (Cai & Vasconcelos, CVPR 2018): Faster R-CNN whose box head is three stages
trained at rising IoU thresholds (0.5 / 0.6 / 0.7), each refining the boxes of the one before.

Stage ``t`` matches its input boxes (plus the ground truth) to objects at IoU ``ious[t]``
(foreground at or above, background below), samples ``box_batch_size_per_image`` RoIs per image
(a quarter foreground at most), and trains a two-layer MLP head with a class score and a
class-agnostic box regression encoded with ``reg_weights[t]`` (10/10/5/5, 20/20/10/10,
30/30/15/15: the targets tighten as the boxes improve). Its loss (cross-entropy plus smooth-L1
with β = 1/9 on foreground RoIs, both over the sampled RoIs, torchvision's Fast R-CNN form) is
weighted by ``stage_weights[t]`` (1, 0.5, 0.25). The sampled RoIs, regressed by the stage and
detached, are the next stage's input. At inference the proposals pass through all stages; the
class scores are the mean of the three stages' softmax scores (each on its own input boxes) and
the boxes are the last stage's regression, as in the paper and MMDetection.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, batched_nms, box_iou, clip_boxes_to_image
from torchvision.ops import boxes as box_ops

from visionzoo.detection.models.faster_rcnn import FasterRCNN
from visionzoo.registry import register_model


class CascadePredictor(nn.Module):
    """Class scores (with background) and one class-agnostic box regression per RoI."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class CascadeRoIHeads(nn.Module):
    """The cascade of box stages, in place of torchvision's ``RoIHeads`` (same call)."""

    def __init__(
        self,
        box_roi_pool: MultiScaleRoIAlign,
        box_heads: list[nn.Module],
        box_predictors: list[nn.Module],
        ious: tuple[float, ...] = (0.5, 0.6, 0.7),
        reg_weights: tuple[tuple[float, ...], ...] = (
            (10.0, 10.0, 5.0, 5.0),
            (20.0, 20.0, 10.0, 10.0),
            (30.0, 30.0, 15.0, 15.0),
        ),
        stage_weights: tuple[float, ...] = (1.0, 0.5, 0.25),
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        n = len(ious)
        if not (
            len(box_heads) == len(box_predictors) == len(reg_weights) == len(stage_weights) == n
        ):
            raise ValueError(
                f"cascade_ious has {n} stages but reg_weights has {len(reg_weights)} and "
                f"stage_weights {len(stage_weights)}: give one entry per stage"
            )
        self.box_roi_pool = box_roi_pool
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.ious = tuple(float(u) for u in ious)
        self.coders = [det_utils.BoxCoder(tuple(w)) for w in reg_weights]
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.sampler = det_utils.BalancedPositiveNegativeSampler(
            batch_size_per_image, positive_fraction
        )
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img

    # ---------------------------------------------------------------------------- training
    def sample(
        self,
        stage: int,
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Stage ``stage``'s RoIs per image (input boxes + ground truth, sampled), their labels
        (0 = background) and regression targets, concatenated over images."""
        rois, labels, deltas = [], [], []
        for boxes, t in zip(proposals, targets, strict=True):
            gt = t["boxes"].to(boxes.dtype)
            boxes = torch.cat((boxes, gt))
            if len(gt):
                iou, matched = box_iou(boxes, gt).max(1)
                label = torch.where(iou >= self.ious[stage], t["labels"][matched], 0)
            else:
                matched = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
                label = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
            (pos,), (neg,) = self.sampler([label])
            keep = torch.where(pos | neg)[0]
            rois.append(boxes[keep])
            labels.append(label[keep])
            gt_boxes = gt[matched[keep]] if len(gt) else boxes[keep]
            deltas.append(self.coders[stage].encode_single(gt_boxes, boxes[keep]))
        return rois, torch.cat(labels), torch.cat(deltas)

    def stage_outputs(
        self,
        stage: int,
        features: dict[str, torch.Tensor],
        rois: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.box_roi_pool(features, rois, image_shapes)
        return self.box_predictors[stage](self.box_heads[stage](pooled))

    def refine(
        self, stage: int, deltas: torch.Tensor, rois: list[torch.Tensor], image_shapes
    ) -> list[torch.Tensor]:
        """Stage ``stage``'s regressed boxes per image, clipped to the image."""
        boxes = self.coders[stage].decode_single(deltas, torch.cat(rois))
        return [
            clip_boxes_to_image(b, shape)
            for b, shape in zip(boxes.split([len(r) for r in rois]), image_shapes, strict=True)
        ]

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            return [], self._losses(features, proposals, image_shapes, targets)
        return self._detect(features, proposals, image_shapes), {}

    def _losses(self, features, proposals, image_shapes, targets) -> dict[str, torch.Tensor]:
        losses = {}
        boxes = proposals
        for stage, weight in enumerate(self.stage_weights):
            rois, labels, reg_targets = self.sample(stage, boxes, targets)
            scores, deltas = self.stage_outputs(stage, features, rois, image_shapes)
            fg = torch.where(labels > 0)[0]
            box_loss = F.smooth_l1_loss(
                deltas[fg], reg_targets[fg], beta=1 / 9, reduction="sum"
            ) / max(labels.numel(), 1)
            losses[f"loss_classifier_s{stage}"] = weight * F.cross_entropy(scores, labels)
            losses[f"loss_box_reg_s{stage}"] = weight * box_loss
            boxes = self.refine(stage, deltas.detach(), rois, image_shapes)
        return losses

    # --------------------------------------------------------------------------- inference
    def _detect(self, features, proposals, image_shapes) -> list[dict[str, torch.Tensor]]:
        boxes, mean_scores = proposals, 0.0
        last = len(self.stage_weights) - 1
        for stage in range(last + 1):
            scores, deltas = self.stage_outputs(stage, features, boxes, image_shapes)
            mean_scores = mean_scores + F.softmax(scores, -1) / (last + 1)
            boxes = self.refine(stage, deltas, boxes, image_shapes)
        out = []
        for b, s in zip(boxes, mean_scores.split([len(b) for b in boxes]), strict=True):
            num_classes = s.shape[1]
            labels = torch.arange(1, num_classes, device=b.device).expand(len(b), -1).reshape(-1)
            b = b[:, None].expand(-1, num_classes - 1, 4).reshape(-1, 4)
            s = s[:, 1:].reshape(-1)
            keep = torch.where(s > self.score_thresh)[0]
            b, s, labels = b[keep], s[keep], labels[keep]
            keep = box_ops.remove_small_boxes(b, 1e-2)
            b, s, labels = b[keep], s[keep], labels[keep]
            keep = batched_nms(b, s, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": b[keep], "scores": s[keep], "labels": labels[keep]})
        return out


class CascadeRCNN(FasterRCNN):
    """Cascade R-CNN + FPN: ``FasterRCNN``'s encoder, FPN and RPN, ``CascadeRoIHeads`` for the
    boxes; the same contract (labels 0..C-1, boxes in input pixels)."""

    def __init__(
        self,
        *,
        cascade_ious: tuple[float, ...] | list[float] = (0.5, 0.6, 0.7),
        stage_weights: tuple[float, ...] | list[float] = (1.0, 0.5, 0.25),
        reg_weights: tuple | list = ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)),
        **kw,
    ) -> None:
        if kw.get("ohem"):
            raise ValueError("cascade_rcnn samples each stage itself; ohem=true is for faster_rcnn")
        if kw.get("variant", "v1") != "v1":
            raise ValueError(
                "cascade_rcnn has two-layer MLP stage heads; variant=v2 is faster_rcnn's"
            )
        super().__init__(**kw)
        old = self.roi_heads
        dim = old.box_head.fc7.out_features
        in_features = old.box_head.fc6.in_features
        n = len(cascade_ious)
        self.roi_heads = CascadeRoIHeads(
            old.box_roi_pool,
            [TwoMLPHead(in_features, dim) for _ in range(n)],
            [CascadePredictor(dim, self.num_classes + 1) for _ in range(n)],
            ious=tuple(cascade_ious),
            reg_weights=tuple(tuple(float(v) for v in w) for w in reg_weights),
            stage_weights=tuple(stage_weights),
            batch_size_per_image=old.fg_bg_sampler.batch_size_per_image,
            positive_fraction=old.fg_bg_sampler.positive_fraction,
            score_thresh=old.score_thresh,
            nms_thresh=old.nms_thresh,
            detections_per_img=old.detections_per_img,
        )


@register_model("detection", "cascade_rcnn")
def cascade_rcnn(*, backbone: str = "resnet50", **kw) -> CascadeRCNN:
    """Cascade R-CNN + FPN on the timm encoder ``backbone`` (stages at IoU 0.5 / 0.6 / 0.7)."""
    return CascadeRCNN(backbone=backbone, **kw)
