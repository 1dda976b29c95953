"""The contract every detection model follows, and the post-processing they share.

``forward(images, targets=None)``

- ``images``: float ``[B, 3, H, W]`` in ``[0, 1]`` (RGB, letterboxed; H and W multiples of the
  model's ``stride``).
- training (``targets`` given): ``targets`` is a list of ``B`` dicts with ``boxes`` (float
  ``[N, 4]`` xyxy in input pixels) and ``labels`` (int64 ``[N]``, ``0..C-1``). Returns a dict of
  scalar losses; ``loss`` is the total to back-propagate, the rest are detached parts for logging.
- eval (``targets`` is None): a list of ``B`` dicts with ``boxes`` (xyxy input pixels),
  ``scores`` and ``labels``, after confidence filtering and NMS with the model's ``conf_thres``,
  ``iou_thres`` and ``max_det``.

Models may define ``set_epoch(epoch, max_epochs, no_aug)``; the task module calls it at the start
of every training epoch (``no_aug`` is true in the final epochs that run without mosaic).
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """Centre-size ``(cx, cy, w, h)`` to corner ``(x1, y1, x2, y2)``."""
    xy, wh = boxes[..., :2], boxes[..., 2:4] / 2
    return torch.cat((xy - wh, xy + wh), dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """Corner ``(x1, y1, x2, y2)`` to centre-size ``(cx, cy, w, h)``."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., :2]), -1)


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    max_nms: int = 30000,
    multi_label: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """Class-aware NMS over a batch of dense predictions.

    ``boxes``: ``[B, N, 4]`` xyxy; ``scores``: ``[B, N, C]`` final class confidences (objectness
    already multiplied in). With ``multi_label`` a box may be kept for several classes, as
    COCO-style evaluation at a low threshold expects.
    """
    out = []
    for b, s in zip(boxes, scores, strict=True):
        if multi_label:
            i, j = (s > conf_thres).nonzero(as_tuple=True)
            bb, conf, cls = b[i], s[i, j], j
        else:
            conf, cls = s.max(1)
            keep = conf > conf_thres
            bb, conf, cls = b[keep], conf[keep], cls[keep]
        if conf.numel() > max_nms:
            top = conf.topk(max_nms).indices
            bb, conf, cls = bb[top], conf[top], cls[top]
        keep = batched_nms(bb.float(), conf.float(), cls, iou_thres)[:max_det]
        out.append({"boxes": bb[keep].float(), "scores": conf[keep].float(), "labels": cls[keep]})
    return out
