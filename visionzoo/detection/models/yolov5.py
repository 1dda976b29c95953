"""YOLOv5-style detector: CSP backbone (C3 blocks, SPPF), PAN neck, three-scale anchor head.

Architecture and training targets follow the YOLOv5 v6+ design (Jocher et al., Ultralytics,
2020–2022): sizes scale depth (number of bottlenecks) and width (channels) of one layout; the
loss is CIoU on boxes, BCE on objectness with the IoU as soft target (per-level balance 4 / 1 /
0.4) and BCE on classes; a target is assigned to every anchor whose width and height ratios to
it are within ``anchor_t`` and to the two neighbouring cells nearest its centre.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.detection.models.common import postprocess, xywh_to_xyxy, xyxy_to_xywh
from visionzoo.losses.box import aligned_box_iou
from visionzoo.registry import register_model

# (depth multiple, width multiple) per size, as published for YOLOv5 v6.
SIZES = {
    "n": (0.33, 0.25),
    "s": (0.33, 0.50),
    "m": (0.67, 0.75),
    "l": (1.0, 1.0),
    "x": (1.33, 1.25),
}
# Default anchors (w, h in input pixels) for strides 8, 16, 32, fitted on COCO at 640 px.
DEFAULT_ANCHORS = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)
STRIDES = (8, 16, 32)


def _channels(c: int, width: float) -> int:
    """Scale a channel count and round up to a multiple of 8."""
    return int(math.ceil(c * width / 8) * 8)


def _depth(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


class Conv(nn.Sequential):
    """Conv2d (no bias) → BatchNorm → SiLU, 'same' padding."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, k // 2 if p is None else p, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03),
            nn.SiLU(inplace=True),
        )


class Bottleneck(nn.Module):
    """1×1 → 3×3 convolution with an optional residual connection."""

    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 1)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block with three convolutions: half the channels go through ``n`` bottlenecks."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden)
        self.cv2 = Conv(c_in, hidden)
        self.cv3 = Conv(2 * hidden, c_out)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5×5 max-pools ≡ pools of 5, 9 and 13."""

    def __init__(self, c_in: int, c_out: int, k: int = 5) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden)
        self.cv2 = Conv(hidden * 4, c_out)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class Backbone(nn.Module):
    """CSP-Darknet: returns features at strides 8, 16 and 32."""

    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        c = [_channels(x, width) for x in (64, 128, 256, 512, 1024)]
        self.stem = Conv(3, c[0], 6, 2, 2)
        self.stage2 = nn.Sequential(Conv(c[0], c[1], 3, 2), C3(c[1], c[1], _depth(3, depth)))
        self.stage3 = nn.Sequential(Conv(c[1], c[2], 3, 2), C3(c[2], c[2], _depth(6, depth)))
        self.stage4 = nn.Sequential(Conv(c[2], c[3], 3, 2), C3(c[3], c[3], _depth(9, depth)))
        self.stage5 = nn.Sequential(
            Conv(c[3], c[4], 3, 2), C3(c[4], c[4], _depth(3, depth)), SPPF(c[4], c[4])
        )
        self.channels = (c[2], c[3], c[4])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return p3, p4, self.stage5(p4)


class PAN(nn.Module):
    """Top-down then bottom-up path aggregation over the three backbone levels."""

    def __init__(self, channels: tuple[int, int, int], depth: float) -> None:
        super().__init__()
        c3, c4, c5 = channels
        n = _depth(3, depth)
        self.lat5 = Conv(c5, c4, 1)
        self.td4 = C3(2 * c4, c4, n, shortcut=False)
        self.lat4 = Conv(c4, c3, 1)
        self.td3 = C3(2 * c3, c3, n, shortcut=False)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = C3(2 * c3, c4, n, shortcut=False)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bu5 = C3(2 * c4, c5, n, shortcut=False)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        l5 = self.lat5(p5)
        t4 = self.td4(torch.cat((F.interpolate(l5, scale_factor=2.0, mode="nearest"), p4), 1))
        l4 = self.lat4(t4)
        out3 = self.td3(torch.cat((F.interpolate(l4, scale_factor=2.0, mode="nearest"), p3), 1))
        out4 = self.bu4(torch.cat((self.down3(out3), l4), 1))
        out5 = self.bu5(torch.cat((self.down4(out4), l5), 1))
        return [out3, out4, out5]


class YOLOv5(nn.Module):
    """YOLOv5 detector following the contract in ``visionzoo.detection.models.common``.

    ``anchors`` is a buffer (input pixels, ``[levels, anchors, 2]``) so AutoAnchor's refit
    travels with the checkpoint. Loss gains follow YOLOv5's defaults after its level/class/size
    rescaling (``box 0.05 × 3/nl``, ``obj 1.0 × (img/640)² × 3/nl``, ``cls 0.5 × nc/80 × 3/nl``);
    the returned ``loss`` is the batch sum (per-image mean × batch size), as YOLOv5 trains.
    """

    stride = 32
    loss_sums_batch = True  # ``loss`` is the per-image mean × batch size, as YOLOv5 trains

    def __init__(
        self,
        *,
        num_classes: int = 80,
        size: str | None = "n",
        multiples: tuple[float, float] | list[float] | None = None,
        anchors: tuple | list = DEFAULT_ANCHORS,
        img_size: int = 640,
        anchor_t: float = 4.0,
        box_gain: float = 0.05,
        obj_gain: float = 1.0,
        cls_gain: float = 0.5,
        label_smoothing: float = 0.0,
        conf_thres: float = 0.001,
        iou_thres: float = 0.6,
        max_det: int = 300,
    ) -> None:
        super().__init__()
        if multiples is not None:  # a custom scale (an imported checkpoint's yaml says it)
            depth, width = (float(m) for m in multiples)
        elif size in SIZES:
            depth, width = SIZES[size]
        else:
            raise ValueError(f"unknown yolov5 size {size!r}; expected one of {', '.join(SIZES)}")
        self.num_classes = num_classes
        self.num_outputs = num_classes + 5
        self.backbone = Backbone(depth, width)
        self.neck = PAN(self.backbone.channels, depth)
        anchors_t = torch.tensor(anchors, dtype=torch.float32)
        if anchors_t.shape[0] != len(STRIDES) or anchors_t.shape[2:] != (2,):
            raise ValueError(f"anchors must be [3 levels][k anchors][w, h]; got {anchors}")
        self.num_anchors = anchors_t.shape[1]
        self.register_buffer("anchors", anchors_t)
        self.register_buffer("strides", torch.tensor(STRIDES, dtype=torch.float32))
        self.head = nn.ModuleList(
            nn.Conv2d(c, self.num_anchors * self.num_outputs, 1) for c in self.backbone.channels
        )
        self.anchor_t = anchor_t
        levels = len(STRIDES)
        self.gains = {
            "box": box_gain * 3 / levels,
            "obj": obj_gain * (img_size / 640) ** 2 * 3 / levels,
            "cls": cls_gain * num_classes / 80 * 3 / levels,
        }
        self.balance = (4.0, 1.0, 0.4)
        self.label_smoothing = label_smoothing
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self._init_weights()

    def _init_weights(self) -> None:
        # Objectness prior: ~8 objects per 640² image; class prior 0.6 / nc (YOLOv5 head init).
        for conv, s in zip(self.head, STRIDES, strict=True):
            b = conv.bias.view(self.num_anchors, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5:] += math.log(0.6 / (self.num_classes - 0.99 + 1e-9))

    def _raw(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``[B, anchors, H, W, 5 + C]`` logits."""
        feats = self.neck(self.backbone(images))
        out = []
        for conv, f in zip(self.head, feats, strict=True):
            b, _, h, w = f.shape
            p = conv(f).view(b, self.num_anchors, self.num_outputs, h, w)
            out.append(p.permute(0, 1, 3, 4, 2).contiguous())
        return out

    def predict_raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense decoded predictions: boxes ``[B, N, 4]`` xyxy and scores ``[B, N, C]``
        (objectness × class probability). Traceable (grid sizes come from tensor shapes)."""
        boxes, scores = [], []
        for i, p in enumerate(self._raw(images)):
            b, a, h, w, _ = p.shape
            ys = torch.arange(h, device=p.device, dtype=p.dtype)
            xs = torch.arange(w, device=p.device, dtype=p.dtype)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack((gx, gy), -1).view(1, 1, h, w, 2)
            anchor = self.anchors[i].to(p.dtype).view(1, a, 1, 1, 2)
            y = p.sigmoid()
            xy = (y[..., :2] * 2 - 0.5 + grid) * self.strides[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            boxes.append(xywh_to_xyxy(torch.cat((xy, wh), -1)).reshape(b, -1, 4))
            scores.append((y[..., 5:] * y[..., 4:5]).reshape(b, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    def forward(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if targets is not None:
            return self.loss(self._raw(images), targets, images.shape[-2:])
        boxes, scores = self.predict_raw(images)
        return postprocess(
            boxes, scores, self.conf_thres, self.iou_thres, self.max_det, multi_label=True
        )

    # ---------------------------------------------------------------- training targets and loss
    def _targets_tensor(self, targets: list[dict[str, torch.Tensor]], device) -> torch.Tensor:
        """``[T, 6]`` rows of (image index, class, cx, cy, w, h) in input pixels."""
        rows = []
        for i, t in enumerate(targets):
            boxes = t["boxes"].to(device).float().reshape(-1, 4)
            idx = torch.full((len(boxes), 1), float(i), device=device)
            cls = t["labels"].to(device).float().view(-1, 1)
            rows.append(torch.cat((idx, cls, xyxy_to_xywh(boxes)), 1))
        return torch.cat(rows) if rows else torch.zeros((0, 6), device=device)

    def build_targets(
        self, shapes: list[tuple[int, int]], targets: torch.Tensor
    ) -> list[tuple[torch.Tensor, ...]]:
        """For each level: (image, anchor, grid y, grid x) indices of the positive cells and
        their class, target box (centre offset from the cell, w, h in grid units) and anchor.

        A target matches an anchor when ``max(w/aw, aw/w, h/ah, ah/h) < anchor_t``; besides its
        own cell it is also assigned to the two neighbours (left/right, up/down) nearest its
        centre, so a positive's centre offset ranges over (-0.5, 1.5) — the ``2σ - 0.5`` decode.
        """
        device = targets.device
        offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device) * 0.5
        out = []
        for i, (h, w) in enumerate(shapes):
            anchors = self.anchors[i] / self.strides[i]  # grid units
            if len(targets) == 0:
                empty = torch.zeros(0, dtype=torch.long, device=device)
                out.append(
                    (
                        empty,
                        empty,
                        empty,
                        empty,
                        empty,
                        torch.zeros((0, 4), device=device),
                        torch.zeros((0, 2), device=device),
                    )
                )
                continue
            t = targets.clone()
            t[:, 2:6] /= self.strides[i]
            ratio = t[None, :, 4:6] / anchors[:, None]  # [A, T, 2]
            match = torch.max(ratio, 1 / ratio).max(2).values < self.anchor_t
            a_idx, t_idx = match.nonzero(as_tuple=True)
            t = t[t_idx]
            gxy = t[:, 2:4]
            gxi = torch.tensor([w, h], device=device) - gxy
            left, up = ((gxy % 1 < 0.5) & (gxy > 1)).T
            right, down = ((gxi % 1 < 0.5) & (gxi > 1)).T
            keep = torch.stack((torch.ones_like(left), left, up, right, down))  # [5, M]
            t = t.repeat(5, 1, 1)[keep]
            a_idx = a_idx.repeat(5, 1)[keep]
            off = (torch.zeros_like(gxy)[None] + offsets[:, None])[keep]
            gxy = t[:, 2:4]
            gij = (gxy - off).long()
            gi = gij[:, 0].clamp_(0, w - 1)
            gj = gij[:, 1].clamp_(0, h - 1)
            tbox = torch.cat((gxy - torch.stack((gi, gj), 1), t[:, 4:6]), 1)
            out.append((t[:, 0].long(), a_idx, gj, gi, t[:, 1].long(), tbox, anchors[a_idx]))
        return out

    def loss(
        self,
        preds: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        input_shape: tuple[int, int] | torch.Size,
    ) -> dict[str, torch.Tensor]:
        device = preds[0].device
        bs = preds[0].shape[0]
        tt = self._targets_tensor(targets, device)
        shapes = [tuple(p.shape[2:4]) for p in preds]
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        pos_value = 1.0 - 0.5 * self.label_smoothing
        neg_value = 0.5 * self.label_smoothing
        for i, (p, (b, a, gj, gi, cls, tbox, anch)) in enumerate(
            zip(preds, self.build_targets(shapes, tt), strict=True)
        ):
            p = p.float()
            tobj = torch.zeros(p.shape[:4], device=device)
            if len(b):
                ps = p[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anch
                iou = aligned_box_iou(
                    xywh_to_xyxy(torch.cat((pxy, pwh), 1)), xywh_to_xyxy(tbox), kind="ciou"
                )
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                if self.num_classes > 1:
                    tcls = torch.full_like(ps[:, 5:], neg_value)
                    tcls[torch.arange(len(b), device=device), cls] = pos_value
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], tcls)
            lobj = lobj + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * self.balance[i]
        lbox = lbox * self.gains["box"]
        lobj = lobj * self.gains["obj"]
        lcls = lcls * self.gains["cls"]
        total = (lbox + lobj + lcls) * bs
        return {
            "loss": total,
            "loss_box": lbox.detach(),
            "loss_obj": lobj.detach(),
            "loss_cls": lcls.detach(),
        }


@register_model("detection", "yolov5")
def yolov5(*, size: str | None = "n", weights: str | None = None, **kw) -> YOLOv5:
    """YOLOv5 detector; ``size`` is one of n, s, m, l, x. ``weights``: an official YOLOv5
    v6.0-v7.0 ``.pt`` file, whose depth, width and anchors replace the configured ones."""
    if not weights:
        return YOLOv5(size=size, **kw)
    from visionzoo.detection.weights import import_weights, read_yolov5

    def build(spec: dict, nc: int) -> YOLOv5:
        return YOLOv5(**{**kw, **spec, "num_classes": kw.get("num_classes") or nc})

    return import_weights(read_yolov5, weights, build)
