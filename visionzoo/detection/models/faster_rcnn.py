"""Faster R-CNN (Ren et al., NeurIPS 2015) with an FPN (Lin et al., CVPR 2017) on a timm encoder,
and optional online hard example mining (Shrivastava et al., CVPR 2016).

The detector is torchvision's ``FasterRCNN`` (RPN, RoIAlign, two-layer box head) behind the
contract of ``visionzoo.detection.models.common``: one image tensor in, class labels ``0..C-1``
(torchvision's background class 0 is hidden), and no resizing, since our data pipeline already
letterboxes. Module names equal torchvision's ``fasterrcnn_resnet50_fpn``, so with
``backbone="resnet50"`` its state dicts load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from visionzoo.backbones import create_encoder
from visionzoo.registry import register_model


class TimmFPN(nn.Module):
    """The deepest ``levels`` feature maps of a timm encoder through an FPN, plus a max-pooled
    extra level (``"pool"``) for the RPN's largest anchors: ``[B, 3, H, W]`` → ordered dict of
    ``[B, out_channels, H / s, W / s]``.

    ``pretrained``: timm's ImageNet weights (downloaded; online only) when no
    ``pretrained_file`` is given. ``frozen_bn``: every encoder BatchNorm frozen (null: when
    the encoder starts from pretrained weights).
    ``fpn_norm``: BatchNorm in the FPN's convolutions (torchvision's ``_v2`` model).
    ``extra_levels``: ``pool`` (a max-pooled level, Faster R-CNN's) or ``p6p7`` (two stride-2
    convolutions on P5, RetinaNet's).

    ``trainable_layers`` counts the encoder's stages (timm ``feature_info`` entries: stem + 4 for a
    ResNet, as torchvision counts) that train, from the deepest; the stem and earlier stages are
    frozen. With pretrained weights every BatchNorm becomes a frozen one: detection batches hold
    a few images per device, too few for stable batch statistics, so the ImageNet statistics are
    kept (torchvision's and Detectron's choice). From scratch there are none to keep, so BN
    trains normally.
    """

    def __init__(
        self,
        name: str,
        *,
        pretrained_file: str | None = None,
        pretrained: bool = False,
        levels: int = 4,
        out_channels: int = 256,
        trainable_layers: int | None = None,
        frozen_bn: bool | None = None,
        fpn_norm: bool = False,
        extra_levels: str = "pool",
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"fpn_levels={levels}; use at least 1 (4 = strides 4-32 on a ResNet)")
        try:
            self.body = create_encoder(
                name,
                pretrained_file=pretrained_file,
                pretrained=pretrained,
                out_indices=tuple(range(-levels, 0)),
            )
        except IndexError as err:  # timm's own message for an out-of-range index says nothing
            raise ValueError(
                f"fpn_levels={levels} but encoder {name!r} has fewer feature stages; lower it"
            ) from err
        stages = [info["module"] for info in self.body.feature_info.info]
        pretrained = pretrained or bool(pretrained_file)
        if trainable_layers is None:
            trainable_layers = 3 if pretrained else len(stages)
        if not 0 <= trainable_layers <= len(stages):
            raise ValueError(
                f"trainable_layers={trainable_layers} but encoder {name!r} has {len(stages)} "
                f"stages ({', '.join(stages)}); use 0..{len(stages)} or null"
            )
        if frozen_bn is None:
            frozen_bn = pretrained
        if frozen_bn:
            from timm.layers import freeze_batch_norm_2d

            self.body = freeze_batch_norm_2d(self.body)
        if trainable_layers < len(stages):
            self._freeze_through(stages[len(stages) - trainable_layers - 1])
        self.strides = tuple(self.body.feature_info.reduction())
        self.fpn = FeaturePyramidNetwork(
            list(self.body.feature_info.channels()),
            out_channels,
            extra_blocks=LastLevelP6P7(out_channels, out_channels)
            if extra_levels == "p6p7"
            else LastLevelMaxPool(),
            norm_layer=nn.BatchNorm2d if fpn_norm else None,
        )
        self.out_channels = out_channels

    def _freeze_through(self, stage: str) -> None:
        """Stop gradients to every encoder child up to and including the one named ``stage``."""
        last = stage.replace(".", "_")  # timm's FeatureListNet flattens dotted names
        for child_name, child in self.body.named_children():
            child.requires_grad_(False)
            if child_name == last:
                return
        raise ValueError(f"stage {stage!r} is not a child of the {type(self.body).__name__}")

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def roi_losses(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: torch.Tensor,
    regression_targets: torch.Tensor,
) -> torch.Tensor:
    """Each RoI's share of torchvision's ``fastrcnn_loss`` times the RoI count: cross-entropy
    plus, for foreground RoIs, smooth-L1 (β = 1/9) on its class's box deltas. Shapes ``[N, K]``,
    ``[N, 4K]``, ``[N]``, ``[N, 4]`` → ``[N]``."""
    loss = F.cross_entropy(class_logits, labels, reduction="none")
    fg = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(len(labels), -1, 4)[fg, labels[fg]]
    box = F.smooth_l1_loss(deltas, regression_targets[fg], beta=1 / 9, reduction="none")
    return loss.index_add(0, fg, box.sum(1))


class OHEMRoIHeads(RoIHeads):
    """Box RoI heads trained with online hard example mining (Shrivastava et al., CVPR 2016).

    In training, every RPN proposal plus the ground truth boxes (those not in the matcher's
    ignore band) is scored by a gradient-free pass of the box head; the ``batch_size_per_image``
    RoIs with the largest loss (``roi_losses``) per image are then run again with gradients and
    give the usual Fast R-CNN loss. Unlike the paper, overlapping RoIs are not first suppressed by
    NMS on their losses (IoU 0.7), so near-duplicates of one hard RoI may all be kept; as in the
    paper, there is no fixed foreground fraction. Inference is unchanged.
    """

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, labels, regression_targets = self.select_hard_examples(
            features, proposals, image_shapes, targets
        )
        class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
        loss_classifier, loss_box_reg = fastrcnn_loss(
            class_logits, box_regression, labels, regression_targets
        )
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    def box_outputs(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[N, K]`` and box deltas ``[N, 4K]`` for all images' RoIs."""
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        return self.box_predictor(self.box_head(pooled))

    def select_hard_examples(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per image: the hardest RoIs ``[k, 4]``, their labels ``[k]`` (0 = background) and
        regression targets ``[k, 4]``, ``k = min(batch_size_per_image, candidates)``."""
        self.check_targets(targets)
        gt_boxes = [t["boxes"].to(proposals[0].dtype) for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched, labels = self.assign_targets_to_proposals(
            proposals, gt_boxes, [t["labels"] for t in targets]
        )
        kept = [torch.where(lab >= 0)[0] for lab in labels]
        proposals = [p[k] for p, k in zip(proposals, kept, strict=True)]
        labels = [lab[k] for lab, k in zip(labels, kept, strict=True)]
        matched_boxes = [
            (g if len(g) else g.new_zeros((1, 4)))[m[k]]
            for g, m, k in zip(gt_boxes, matched, kept, strict=True)
        ]
        regression_targets = list(self.box_coder.encode(matched_boxes, proposals))
        with torch.no_grad():
            losses = roi_losses(
                *self.box_outputs(features, proposals, image_shapes),
                torch.cat(labels),
                torch.cat(regression_targets),
            )
        k = self.fg_bg_sampler.batch_size_per_image
        hard = [
            loss.topk(min(k, len(loss))).indices
            for loss in losses.split([len(p) for p in proposals])
        ]
        return (
            [p[h] for p, h in zip(proposals, hard, strict=True)],
            [lab[h] for lab, h in zip(labels, hard, strict=True)],
            [t[h] for t, h in zip(regression_targets, hard, strict=True)],
        )


def torchvision_forward(
    model: nn.Module,
    run: Callable[..., Any],
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]] | None,
    label_offset: int,
) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
    """Our detection contract around a torchvision detector's ``forward`` (``run``): the
    module's mode picks the branch, as in torchvision; labels ``0..C-1`` are shifted by
    ``label_offset`` (1 where torchvision reserves class 0 for background) on the way in and
    back on the way out; boxes without area are dropped from the targets (torchvision refuses
    them; clipping can make them); training returns the losses and their sum as ``loss``."""
    if model.training != (targets is not None):
        raise ValueError(
            f"{type(model).__name__} computes losses in train mode (pass targets) and detections "
            f"in eval mode (no targets); it is in {'train' if model.training else 'eval'} mode "
            f"and got targets={'None' if targets is None else 'a list'}: call model.train() or "
            ".eval()"
        )
    if targets is None:
        return [
            {"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - label_offset}
            for d in run(list(images))
        ]
    kept = []
    for t in targets:
        boxes = t["boxes"].to(images.dtype).reshape(-1, 4)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        kept.append({"boxes": boxes[keep], "labels": t["labels"].long()[keep] + label_offset})
    losses = run(list(images), kept)
    return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}


class LetterboxedTransform(GeneralizedRCNNTransform):
    """Normalisation and batching only: images arrive letterboxed at their final size, so the
    resize is the identity and boxes are in input pixels on the way in and out."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], size_divisible: int):
        super().__init__(0, 0, list(mean), list(std), size_divisible=size_divisible)

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.image_mean}, std={self.image_std})"


class FasterRCNN(TorchvisionFasterRCNN):
    """Faster R-CNN + FPN following the contract in ``visionzoo.detection.models.common``.

    Training returns torchvision's four losses (each a mean over the batch's sampled anchors or
    RoIs) and their sum as ``loss``. The module's mode decides the branch, as in torchvision:
    train mode needs ``targets``, eval mode returns detections. Images are normalised with the
    encoder's pretrained mean and std (ImageNet's for ResNets).
    """

    def __init__(
        self,
        *,
        num_classes: int = 80,
        backbone: str = "resnet50",
        pretrained_file: str | None = None,
        pretrained: bool = False,
        trainable_layers: int | None = None,
        fpn_levels: int = 4,
        fpn_channels: int = 256,
        anchor_sizes: tuple | list = ((32,), (64,), (128,), (256,), (512,)),
        aspect_ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        box_batch_size_per_image: int = 512,
        box_head_dim: int = 1024,
        variant: str = "v1",
        frozen_bn: bool | None = None,
        ohem: bool = False,
        conf_thres: float = 0.001,
        iou_thres: float = 0.5,
        max_det: int = 100,
    ) -> None:
        if variant not in ("v1", "v2"):
            raise ValueError(
                f"model.variant={variant!r}; choose v1 (two-layer MLP box head, as "
                "fasterrcnn_resnet50_fpn) or v2 (BatchNorm FPN, two-conv RPN head, four-conv "
                "box head, as fasterrcnn_resnet50_fpn_v2)"
            )
        v2 = variant == "v2"
        body = TimmFPN(
            backbone,
            pretrained_file=pretrained_file,
            pretrained=pretrained,
            levels=fpn_levels,
            out_channels=fpn_channels,
            trainable_layers=trainable_layers,
            frozen_bn=frozen_bn,
            fpn_norm=v2,
        )
        sizes = tuple(tuple(s) if isinstance(s, list | tuple) else (s,) for s in anchor_sizes)
        if len(sizes) != fpn_levels + 1:
            raise ValueError(
                f"anchor_sizes has {len(sizes)} levels but the FPN gives fpn_levels + 1 = "
                f"{fpn_levels + 1} (strides {', '.join(map(str, body.strides))} and a pooled "
                "level); give one tuple of sizes (px) per level"
            )
        anchors = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))
        pool = MultiScaleRoIAlign([str(i) for i in range(fpn_levels)], 7, sampling_ratio=2)
        if v2:  # torchvision's fasterrcnn_resnet50_fpn_v2 heads (Li et al. 2021, ViTDet recipe)
            rpn_head = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
            box_head = FastRCNNConvFCHead(
                (fpn_channels, 7, 7), [256] * 4, [box_head_dim], norm_layer=nn.BatchNorm2d
            )
        else:
            rpn_head, box_head = None, TwoMLPHead(fpn_channels * 7 * 7, box_head_dim)
        super().__init__(
            body,
            num_classes=None,
            rpn_anchor_generator=anchors,
            rpn_head=rpn_head,
            rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
            rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
            rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
            box_roi_pool=pool,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(box_head_dim, num_classes + 1),
            box_score_thresh=conf_thres,
            box_nms_thresh=iou_thres,
            box_detections_per_img=max_det,
            box_batch_size_per_image=box_batch_size_per_image,
        )
        cfg = body.body.pretrained_cfg
        self.stride = max(body.strides)
        self.transform = LetterboxedTransform(cfg["mean"], cfg["std"], self.stride)
        if ohem:
            heads = self.roi_heads
            self.roi_heads = OHEMRoIHeads(
                heads.box_roi_pool,
                heads.box_head,
                heads.box_predictor,
                fg_iou_thresh=heads.proposal_matcher.high_threshold,
                bg_iou_thresh=heads.proposal_matcher.low_threshold,
                batch_size_per_image=box_batch_size_per_image,
                positive_fraction=heads.fg_bg_sampler.positive_fraction,
                bbox_reg_weights=heads.box_coder.weights,
                score_thresh=conf_thres,
                nms_thresh=iou_thres,
                detections_per_img=max_det,
            )
        self.num_classes = num_classes

    def forward(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        return torchvision_forward(self, super().forward, images, targets, label_offset=1)


@register_model("detection", "faster_rcnn")
def faster_rcnn(*, backbone: str = "resnet50", weights: str | None = None, **kw) -> FasterRCNN:
    """Faster R-CNN + FPN on the timm encoder ``backbone``; ``ohem=True`` mines hard RoIs.
    ``weights``: a torchvision ``fasterrcnn_resnet50_fpn`` / ``_v2`` state dict (backbone,
    variant and frozen BatchNorm follow the file; 3 trainable stages unless set, as
    torchvision fine-tunes)."""
    if not weights:
        return FasterRCNN(backbone=backbone, **kw)
    from visionzoo.detection.weights import import_weights, read_torchvision_frcnn

    def build(spec: dict, nc: int) -> FasterRCNN:
        layers = kw.get("trainable_layers")
        layers = 3 if layers is None else layers
        num_classes = kw.get("num_classes") or nc
        return FasterRCNN(**{**kw, **spec, "num_classes": num_classes, "trainable_layers": layers})

    return import_weights(read_torchvision_frcnn, weights, build)
