"""YOLOX-style anchor-free detector (Ge et al., "YOLOX: Exceeding YOLO Series in 2021").

CSPDarknet backbone (Focus stem, CSP stages, SPP with pools 5 / 9 / 13 in the last stage), PAFPN
neck and a decoupled head per stride 8 / 16 / 32 that predicts, at every feature-map cell, the
box centre as an offset from the cell's top-left corner, log width / height in strides, an
objectness logit and class logits. Training assigns cells to objects with SimOTA (paper sec. 2.2,
"Advanced label assignment") and adds an L1 loss on the raw offsets in the final no-augmentation
epochs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import box_iou

from visionzoo.detection.models.common import postprocess, xyxy_to_xywh
from visionzoo.losses.box import aligned_box_iou
from visionzoo.registry import register_model

# (depth multiple, width multiple, depthwise convolutions) per size, as published.
SIZES = {
    "nano": (0.33, 0.25, True),
    "tiny": (0.33, 0.375, False),
    "s": (0.33, 0.50, False),
    "m": (0.67, 0.75, False),
    "l": (1.0, 1.0, False),
    "x": (1.33, 1.25, False),
}
STRIDES = (8, 16, 32)
# What the network sees: our pipeline's 0-1 RGB as it is, or converted to the 0-255 BGR the
# official YOLOX weights were trained on (no mean / std normalisation in either).
INPUT_FORMATS = ("rgb", "bgr255")


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) → BatchNorm (eps 1e-3, momentum 0.03) → SiLU, 'same' padding."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03),
            nn.SiLU(inplace=True),
        )


class DWConv(nn.Sequential):
    """Depthwise k×k then pointwise 1×1 ConvBNAct (YOLOX-Nano's replacement for k×k convs)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1) -> None:
        super().__init__(ConvBNAct(c_in, c_in, k, s, groups=c_in), ConvBNAct(c_in, c_out, 1))


def _conv(depthwise: bool) -> type[nn.Module]:
    return DWConv if depthwise else ConvBNAct


class Bottleneck(nn.Module):
    """1×1 → 3×3 convolution keeping ``c`` channels, with an optional residual connection."""

    def __init__(self, c: int, shortcut: bool, depthwise: bool) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c, c, 1)
        self.conv2 = _conv(depthwise)(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.add else y


class CSPLayer(nn.Module):
    """Cross-stage partial block: half the channels pass ``n`` bottlenecks, half skip them."""

    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool, depthwise: bool) -> None:
        super().__init__()
        hidden = c_out // 2
        self.conv1 = ConvBNAct(c_in, hidden)
        self.conv2 = ConvBNAct(c_in, hidden)
        self.conv3 = ConvBNAct(2 * hidden, c_out)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut, depthwise) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), 1))


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: the input concatenated with its 5×5, 9×9 and 13×13 max-pools."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = c_in // 2
        self.conv1 = ConvBNAct(c_in, hidden)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.conv2 = ConvBNAct(hidden * (len(kernels) + 1), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.pools)], 1))


class Focus(nn.Module):
    """Space-to-depth (each 2×2 patch → 4 channels) then a k×k ConvBNAct: [B,C,H,W] →
    [B, c_out, H/2, W/2]."""

    def __init__(self, c_in: int, c_out: int, k: int = 3) -> None:
        super().__init__()
        self.conv = ConvBNAct(4 * c_in, c_out, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(patches, 1))


class CSPDarknet(nn.Module):
    """Backbone returning the features of dark3 / dark4 / dark5 (strides 8, 16, 32)."""

    def __init__(self, depth: float, width: float, depthwise: bool) -> None:
        super().__init__()
        c = [int(width * 64 * 2**i) for i in range(5)]
        n = max(round(3 * depth), 1)
        conv = _conv(depthwise)
        self.stem = Focus(3, c[0], 3)
        self.dark2 = nn.Sequential(conv(c[0], c[1], 3, 2), CSPLayer(c[1], c[1], n, True, depthwise))
        self.dark3 = nn.Sequential(
            conv(c[1], c[2], 3, 2), CSPLayer(c[2], c[2], 3 * n, True, depthwise)
        )
        self.dark4 = nn.Sequential(
            conv(c[2], c[3], 3, 2), CSPLayer(c[3], c[3], 3 * n, True, depthwise)
        )
        self.dark5 = nn.Sequential(
            conv(c[3], c[4], 3, 2),
            SPPBottleneck(c[4], c[4]),
            CSPLayer(c[4], c[4], n, False, depthwise),
        )
        self.channels = (c[2], c[3], c[4])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d3 = self.dark3(self.dark2(self.stem(x)))
        d4 = self.dark4(d3)
        return d3, d4, self.dark5(d4)


class PAFPN(nn.Module):
    """Top-down (FPN) then bottom-up (PAN) aggregation; outputs keep the backbone's channels."""

    def __init__(self, channels: tuple[int, int, int], depth: float, depthwise: bool) -> None:
        super().__init__()
        c3, c4, c5 = channels
        n = round(3 * depth)
        conv = _conv(depthwise)
        self.lateral5 = ConvBNAct(c5, c4)
        self.top_down4 = CSPLayer(2 * c4, c4, n, False, depthwise)
        self.lateral4 = ConvBNAct(c4, c3)
        self.top_down3 = CSPLayer(2 * c3, c3, n, False, depthwise)
        self.down3 = conv(c3, c3, 3, 2)
        self.bottom_up4 = CSPLayer(2 * c3, c4, n, False, depthwise)
        self.down4 = conv(c4, c4, 3, 2)
        self.bottom_up5 = CSPLayer(2 * c4, c5, n, False, depthwise)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        d3, d4, d5 = feats
        l5 = self.lateral5(d5)
        t4 = self.top_down4(torch.cat((F.interpolate(l5, scale_factor=2.0), d4), 1))
        l4 = self.lateral4(t4)
        out3 = self.top_down3(torch.cat((F.interpolate(l4, scale_factor=2.0), d3), 1))
        out4 = self.bottom_up4(torch.cat((self.down3(out3), l4), 1))
        out5 = self.bottom_up5(torch.cat((self.down4(out4), l5), 1))
        return [out3, out4, out5]


class DecoupledHead(nn.Module):
    """One level's head: 1×1 stem, then separate two-conv branches for classification and for
    regression + objectness. Returns ``[B, 4 + 1 + C, H, W]`` (box offsets, objectness, classes).
    """

    def __init__(self, c_in: int, hidden: int, num_classes: int, depthwise: bool) -> None:
        super().__init__()
        conv = _conv(depthwise)
        self.stem = ConvBNAct(c_in, hidden)
        self.cls_convs = nn.Sequential(conv(hidden, hidden, 3), conv(hidden, hidden, 3))
        self.reg_convs = nn.Sequential(conv(hidden, hidden, 3), conv(hidden, hidden, 3))
        self.cls_pred = nn.Conv2d(hidden, num_classes, 1)
        self.reg_pred = nn.Conv2d(hidden, 4, 1)
        self.obj_pred = nn.Conv2d(hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        reg = self.reg_convs(x)
        return torch.cat(
            (self.reg_pred(reg), self.obj_pred(reg), self.cls_pred(self.cls_convs(x))), 1
        )


@torch.no_grad()
def simota_assign(
    pred_boxes: torch.Tensor,
    pred_scores: torch.Tensor,
    centres: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    center_radius: float = 2.5,
    topk_candidates: int = 10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimOTA dynamic-k label assignment for one image (YOLOX, sec. 2.2).

    ``pred_boxes`` ``[N, 4]`` xyxy and ``pred_scores`` ``[N, C]`` (objectness × class
    probability) of the ``N`` points with ``centres`` ``[N, 2]`` (input pixels) and ``strides``
    ``[N]``; ``G`` ground truths ``gt_boxes`` ``[G, 4]`` xyxy, ``gt_labels`` ``[G]``.

    Candidates are points whose centre lies inside a GT box or within ``center_radius`` strides
    of its centre. Between GT g and candidate p the cost is ``BCE(sqrt(score_p), onehot_g) +
    3 · (−log IoU) + 1e5`` if p is not both inside the box and near the centre. Each GT takes
    its ``k = max(1, ⌊Σ top-``topk_candidates`` IoUs⌋)`` cheapest candidates; a point picked by
    several GTs keeps the cheapest. Returns ``fg_mask`` ``[N]`` bool, the matched GT index and
    the IoU with it for each foreground point (``[F]``, in point order).
    """
    pred_boxes, pred_scores = pred_boxes.float(), pred_scores.float()
    radius = (center_radius * strides)[None, :]  # [1, N]
    cx, cy = centres[None, :, 0], centres[None, :, 1]
    x1, y1, x2, y2 = gt_boxes[:, :, None].float().unbind(1)  # each [G, 1]
    in_box = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
    gcx, gcy = (x1 + x2) / 2, (y1 + y2) / 2
    in_centre = ((cx - gcx).abs() < radius) & ((cy - gcy).abs() < radius)
    candidate = (in_box | in_centre).any(0)  # [N]
    in_both = (in_box & in_centre)[:, candidate]  # [G, M]

    ious = box_iou(gt_boxes.float(), pred_boxes[candidate])  # [G, M]
    # Σ_c BCE(p_c, onehot_c) = Σ_c −log(1 − p_c) + (−log p_y + log(1 − p_y)); logs clamp at −100
    # as F.binary_cross_entropy does.
    p = pred_scores[candidate].sqrt()
    neg = -torch.log1p(-p).clamp_min(-100)
    pos = -torch.log(p).clamp_min(-100)
    cls_cost = neg.sum(1)[None] + (pos - neg)[:, gt_labels].T  # [G, M]
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~in_both).float()

    k = min(topk_candidates, ious.shape[1])
    dynamic_k = ious.topk(k, dim=1).values.sum(1).int().clamp_min(1)  # [G]
    rank = cost.argsort(1).argsort(1)
    matching = rank < dynamic_k[:, None]  # [G, M]
    multiple = matching.sum(0) > 1
    cheapest = cost.argmin(0)
    matching[:, multiple] = F.one_hot(cheapest[multiple], len(gt_boxes)).T.bool()

    matched = matching.any(0)
    fg_mask = candidate.clone()
    fg_mask[candidate] = matched
    gt_index = matching[:, matched].int().argmax(0)
    matched_iou = ious[:, matched].gather(0, gt_index[None])[0]
    return fg_mask, gt_index, matched_iou


class YOLOX(nn.Module):
    """YOLOX detector following the contract in ``visionzoo.detection.models.common``.

    The training loss is ``iou_weight · Σ(1 − IoU²) + Σ BCE(obj) + Σ BCE(cls, onehot · IoU) +
    l1_weight · Σ |offset − target|`` (the L1 term only once ``set_epoch`` says ``no_aug``), each
    sum divided by the number of foreground points in the batch (at least 1). The returned parts
    carry their weights, so ``loss`` is their sum.
    """

    stride = 32

    def __init__(
        self,
        *,
        num_classes: int = 80,
        size: str = "s",
        conf_thres: float = 0.001,
        iou_thres: float = 0.65,
        max_det: int = 300,
        center_radius: float = 2.5,
        topk_candidates: int = 10,
        iou_weight: float = 5.0,
        l1_weight: float = 1.0,
        prior_prob: float = 0.01,
        input_format: str = "rgb",
    ) -> None:
        super().__init__()
        if input_format not in INPUT_FORMATS:
            raise ValueError(
                f"model.input_format={input_format!r}; choose rgb (0-1 RGB, our pipeline's) or "
                "bgr255 (0-255 BGR, the official YOLOX weights' convention)"
            )
        self.bgr255 = input_format == "bgr255"
        if size not in SIZES:
            raise ValueError(f"unknown yolox size {size!r}; expected one of {', '.join(SIZES)}")
        depth, width, depthwise = SIZES[size]
        self.num_classes = num_classes
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.neck = PAFPN(self.backbone.channels, depth, depthwise)
        self.heads = nn.ModuleList(
            DecoupledHead(c, int(256 * width), num_classes, depthwise)
            for c in self.backbone.channels
        )
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self.center_radius, self.topk_candidates = center_radius, topk_candidates
        self.iou_weight, self.l1_weight = iou_weight, l1_weight
        self.use_l1 = False
        bias = -math.log((1 - prior_prob) / prior_prob)  # sigmoid(bias) = prior_prob
        for head in self.heads:
            nn.init.constant_(head.cls_pred.bias, bias)
            nn.init.constant_(head.obj_pred.bias, bias)

    def set_epoch(self, epoch: int, max_epochs: int, no_aug: bool) -> None:
        """Turn the L1 offset loss on for the final no-augmentation epochs (paper sec. 2.2)."""
        self.use_l1 = bool(no_aug)

    def _raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All levels flattened: outputs ``[B, N, 5 + C]`` (raw offsets, objectness and class
        logits), cell indices ``[N, 2]`` (x, y) and strides ``[N]``, N = Σ H_l·W_l."""
        if self.bgr255:
            images = images.flip(1) * 255.0
        outs, grids, strides = [], [], []
        for head, f, s in zip(self.heads, self.neck(self.backbone(images)), STRIDES, strict=True):
            p = head(f)
            h, w = p.shape[-2:]
            outs.append(p.flatten(2).transpose(1, 2))
            ys = torch.arange(h, device=p.device, dtype=p.dtype)
            xs = torch.arange(w, device=p.device, dtype=p.dtype)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grids.append(torch.stack((gx, gy), -1).reshape(-1, 2))
            strides.append(torch.full_like(gx, s).reshape(-1))
        return torch.cat(outs, 1), torch.cat(grids), torch.cat(strides)

    @staticmethod
    def _decode(offsets: torch.Tensor, grid: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """Raw ``(dx, dy, log w, log h)`` ``[..., N, 4]`` → xyxy input pixels."""
        s = strides[:, None]
        xy = (offsets[..., :2] + grid) * s
        half = offsets[..., 2:4].exp() * s / 2
        return torch.cat((xy - half, xy + half), -1)

    def predict_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense predictions: boxes ``[B, N, 4]`` xyxy and scores ``[B, N, C]`` =
        sigmoid(objectness) · sigmoid(class). Traceable (grids come from feature shapes)."""
        out, grid, strides = self._raw(images)
        boxes = self._decode(out[..., :4], grid, strides)
        return boxes, out[..., 4:5].sigmoid() * out[..., 5:].sigmoid()

    def forward(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if targets is not None:
            return self.loss(*self._raw(images), targets)
        return postprocess(*self.predict_raw(images), self.conf_thres, self.iou_thres, self.max_det)

    def loss(
        self,
        out: torch.Tensor,
        grid: torch.Tensor,
        strides: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """YOLOX losses from ``_raw`` outputs and contract-format ``targets``."""
        out, grid, strides = out.float(), grid.float(), strides.float()
        boxes = self._decode(out[..., :4], grid, strides)
        scores = out[..., 4:5].sigmoid() * out[..., 5:].sigmoid()
        centres = (grid + 0.5) * strides[:, None]
        fg_masks, gt_boxes, cls_targets = [], [], []
        for b, t in enumerate(targets):
            gt = t["boxes"].to(out.device).float().reshape(-1, 4)
            labels = t["labels"].to(out.device).long().reshape(-1)
            if len(gt) == 0:
                fg_masks.append(torch.zeros(len(grid), dtype=torch.bool, device=out.device))
                continue
            fg, idx, iou = simota_assign(
                boxes[b].detach(),
                scores[b].detach(),
                centres,
                strides,
                gt,
                labels,
                self.center_radius,
                self.topk_candidates,
            )
            fg_masks.append(fg)
            gt_boxes.append(gt[idx])
            cls_targets.append(F.one_hot(labels[idx], self.num_classes) * iou[:, None])
        fg_mask = torch.stack(fg_masks)  # [B, N]
        num_fg = int(fg_mask.sum())
        norm = max(num_fg, 1)
        gt_fg = torch.cat(gt_boxes) if gt_boxes else out.new_zeros((0, 4))
        cls_fg = torch.cat(cls_targets) if cls_targets else out.new_zeros((0, self.num_classes))
        fg_out = out[fg_mask]

        iou = aligned_box_iou(boxes[fg_mask], gt_fg)
        loss_iou = self.iou_weight * (1 - iou**2).sum() / norm
        loss_obj = (
            F.binary_cross_entropy_with_logits(out[..., 4], fg_mask.float(), reduction="sum") / norm
        )
        loss_cls = F.binary_cross_entropy_with_logits(fg_out[:, 5:], cls_fg, reduction="sum") / norm
        if self.use_l1:
            fg_grid = grid.expand(len(targets), -1, -1)[fg_mask]
            fg_stride = strides.expand(len(targets), -1)[fg_mask][:, None]
            xywh = xyxy_to_xywh(gt_fg) / fg_stride
            l1_target = torch.cat((xywh[:, :2] - fg_grid, torch.log(xywh[:, 2:] + 1e-8)), 1)
            loss_l1 = self.l1_weight * (fg_out[:, :4] - l1_target).abs().sum() / norm
        else:
            loss_l1 = out.new_zeros(())
        total = loss_iou + loss_obj + loss_cls + loss_l1
        return {
            "loss": total,
            "loss_iou": loss_iou.detach(),
            "loss_obj": loss_obj.detach(),
            "loss_cls": loss_cls.detach(),
            "loss_l1": loss_l1.detach(),
            "num_fg": torch.tensor(float(num_fg), device=out.device),
        }


@register_model("detection", "yolox")
def yolox(*, size: str = "s", weights: str | None = None, **kw) -> YOLOX:
    """YOLOX detector; ``size`` is one of nano, tiny, s, m, l, x. ``weights``: an official
    YOLOX ``.pth``; its size replaces the configured one and the network takes over YOLOX's
    0-255 BGR input convention (``input_format=bgr255``)."""
    if not weights:
        return YOLOX(size=size, **kw)
    from visionzoo.detection.weights import import_weights, read_yolox

    def build(spec: dict, nc: int) -> YOLOX:
        return YOLOX(**{**kw, **spec, "num_classes": kw.get("num_classes") or nc})

    return import_weights(read_yolox, weights, build)
