"""RetinaNet (Lin et al., ICCV 2017): one-stage detector with the focal loss, on a timm encoder.

torchvision's ``RetinaNet`` (classification and box subnets of four 3×3 convolutions, sigmoid
focal loss with α = 0.25, γ = 2, L1 box loss, IoU 0.5 / 0.4 anchor matching) on
``TimmFPN``: P3-P5 from the encoder's three deepest stages plus P6, P7 from stride-2
convolutions, anchors of three scales (2^0, 2^⅓, 2^⅔) × three aspect ratios per level. Behind
the contract of ``visionzoo.detection.models.common`` like ``FasterRCNN``: one letterboxed image
tensor in, labels ``0..C-1`` (RetinaNet has no background class), boxes in input pixels.
"""

from __future__ import annotations

import torch
from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator

from visionzoo.detection.models.faster_rcnn import (
    LetterboxedTransform,
    TimmFPN,
    torchvision_forward,
)
from visionzoo.registry import register_model


def default_anchor_sizes(base: tuple[int, ...] = (32, 64, 128, 256, 512)) -> tuple:
    """Three scales per level, 2^(k/3) apart (the paper's, torchvision's)."""
    return tuple(tuple(int(b * 2 ** (k / 3)) for k in range(3)) for b in base)


class RetinaNet(TorchvisionRetinaNet):
    """RetinaNet following ``visionzoo.detection.models.common``: training returns the focal
    classification loss and the box loss (each normalised by the number of foreground anchors)
    and their sum as ``loss``; eval mode returns detections."""

    def __init__(
        self,
        *,
        num_classes: int = 80,
        backbone: str = "resnet50",
        pretrained_file: str | None = None,
        pretrained: bool = False,
        trainable_layers: int | None = None,
        frozen_bn: bool | None = None,
        fpn_channels: int = 256,
        anchor_sizes: tuple | list | None = None,
        aspect_ratios: tuple[float, ...] | list[float] = (0.5, 1.0, 2.0),
        topk_candidates: int = 1000,
        conf_thres: float = 0.001,
        iou_thres: float = 0.5,
        max_det: int = 100,
    ) -> None:
        body = TimmFPN(
            backbone,
            pretrained_file=pretrained_file,
            pretrained=pretrained,
            levels=3,
            out_channels=fpn_channels,
            trainable_layers=trainable_layers,
            frozen_bn=frozen_bn,
            extra_levels="p6p7",
        )
        sizes = default_anchor_sizes() if anchor_sizes is None else anchor_sizes
        sizes = tuple(tuple(s) if isinstance(s, list | tuple) else (s,) for s in sizes)
        if len(sizes) != 5:
            raise ValueError(
                f"anchor_sizes has {len(sizes)} levels; RetinaNet predicts on 5 (P3-P7, strides "
                "8-128): give one tuple of sizes (px) per level, or null for the paper's"
            )
        if len({len(s) for s in sizes}) != 1:
            raise ValueError(f"anchor_sizes={sizes}: every level needs as many sizes")
        anchors = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))
        super().__init__(
            body,
            num_classes=num_classes,
            anchor_generator=anchors,
            score_thresh=conf_thres,
            nms_thresh=iou_thres,
            detections_per_img=max_det,
            topk_candidates=topk_candidates,
        )
        cfg = body.body.pretrained_cfg
        self.stride = 32  # inputs pad to this; P6 / P7 (strides 64, 128) take odd sizes
        self.transform = LetterboxedTransform(cfg["mean"], cfg["std"], self.stride)
        self.num_classes = num_classes

    def forward(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        # RetinaNet has no background class: our labels are its own
        return torchvision_forward(self, super().forward, images, targets, label_offset=0)


@register_model("detection", "retinanet")
def retinanet(*, backbone: str = "resnet50", **kw) -> RetinaNet:
    """RetinaNet (focal loss) on the timm encoder ``backbone`` with a P3-P7 FPN."""
    return RetinaNet(backbone=backbone, **kw)
