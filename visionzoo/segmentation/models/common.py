"""Building blocks shared by the segmentation architectures."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNReLU(nn.Sequential):
    """3×3 (or k×k) convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> None:
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad ``x`` (B, C, H, W) on the bottom/right so H and W divide ``multiple``.

    Returns the padded tensor and the original (H, W) so callers can crop back; this is what lets
    every model take inputs of any size.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


class SegmentationModel(nn.Module):
    """Base class: pads the input to ``self.stride``, runs ``_forward`` and crops back."""

    stride: int = 32
    num_classes: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, in_chans, H, W) → logits (B, num_classes, H, W) for any H, W."""
        x, (h, w) = pad_to_multiple(x, self.stride)
        out = self._forward(x)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., :h, :w]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
