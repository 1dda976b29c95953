"""Whole-image and sliding-window inference with optional horizontal-flip TTA."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def _starts(size: int, crop: int, stride: int) -> list[int]:
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop, stride))
    return starts + [size - crop]  # the last window is flush with the border


def sliding_window(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    crop: Sequence[int],
    stride: Sequence[int],
    num_classes: int,
) -> torch.Tensor:
    """Run ``model`` on overlapping ``crop`` windows every ``stride`` pixels and average the
    logits where windows overlap. ``image`` (B, C, H, W) → logits (B, num_classes, H, W)."""
    if not all(0 < s <= c for s, c in zip(stride, crop, strict=True)):
        # a stride above the crop leaves pixels no window covers (their logits would be NaN)
        raise ValueError(f"sliding-window stride {list(stride)} must be in 1..crop {list(crop)}")
    b, _, h, w = image.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    out = image.new_zeros(b, num_classes, h, w)
    count = image.new_zeros(1, 1, h, w)
    for y in _starts(h, ch, stride[0]):
        for x in _starts(w, cw, stride[1]):
            out[..., y : y + ch, x : x + cw] += model(image[..., y : y + ch, x : x + cw])
            count[..., y : y + ch, x : x + cw] += 1
    return out / count


def predict_logits(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    num_classes: int,
    mode: str = "whole",
    crop: Sequence[int] = (512, 512),
    stride: Sequence[int] = (341, 341),
    flip: bool = False,
) -> torch.Tensor:
    """Logits for ``image`` (B, C, H, W) by ``mode`` ``whole`` or ``slide``; with ``flip`` the
    prediction is averaged with that of the mirrored image (flipped back)."""
    if mode not in ("whole", "slide"):
        raise ValueError(f"inference mode {mode!r} is not one of whole, slide")

    def run(x: torch.Tensor) -> torch.Tensor:
        if mode == "whole":
            return model(x)
        return sliding_window(model, x, crop=crop, stride=stride, num_classes=num_classes)

    logits = run(image)
    if flip:
        logits = 0.5 * (logits + run(image.flip(-1)).flip(-1))
    return logits


def resize_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of logits to ``size`` (H, W)."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def logits_at_labels(
    logits: torch.Tensor, masks: torch.Tensor, mask_size: torch.Tensor | None = None
) -> torch.Tensor:
    """Bring logits (B, C, h, w) to the resolution of the label masks (B, H, W) they are scored
    against: bilinear resize (MMSegmentation evaluates at the labels' own size). Masks of
    different sizes come padded to (H, W) with their sizes in ``mask_size`` (B, 2); each
    sample's logits then go to its own size and the padding stays 0 (ignored in the masks)."""
    if mask_size is None:
        if logits.shape[-2:] == masks.shape[-2:]:
            return logits
        return resize_logits(logits, masks.shape[-2:])
    out = logits.new_zeros(*logits.shape[:2], *masks.shape[-2:])
    for i, (h, w) in enumerate(mask_size.tolist()):
        out[i, :, :h, :w] = resize_logits(logits[i : i + 1], (h, w))[0]
    return out
