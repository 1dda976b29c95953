"""Colour conversions as MATLAB computes them, for reproducing MATLAB IQA reference scores.

- ``rgb_to_gray``: MATLAB ``rgb2gray``. Its weights are the first row of the inverse NTSC
  (YIQ) matrix, not the rounded 0.2989/0.5870/0.1140 of its documentation.
- ``rgb_to_y``: the luma of MATLAB ``rgb2ycbcr`` (ITU-R BT.601, studio range 16–235), the Y
  channel of the super-resolution literature.

Both take (B, 3, H, W) RGB in [0, 1] and return (B, 1, H, W) in [0, 1]. ``quantize=True``
rounds to the 8-bit grid, as MATLAB does when the input is ``uint8`` (how the reference scores
on 8-bit images were produced); it is not differentiable.
"""

from __future__ import annotations

import torch

# inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703])(1, :), as in MATLAB rgb2gray.
GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)
# rgb2ycbcr, Y row: 16 + [65.481 128.553 24.966] · RGB (RGB in [0, 1], Y in 0..255).
Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)
Y_OFFSET = 16 / 255


def _check_rgb(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an RGB batch of shape (B, 3, H, W), got {tuple(x.shape)}")


def _quantize(x: torch.Tensor) -> torch.Tensor:
    # MATLAB rounds half away from zero; values here are non-negative, so floor(v + 0.5).
    return torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255


def rgb_to_gray(x: torch.Tensor, *, quantize: bool = False) -> torch.Tensor:
    """MATLAB ``rgb2gray``: (B, 3, H, W) RGB in [0, 1] → (B, 1, H, W)."""
    _check_rgb(x)
    w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    g = (x * w).sum(1, keepdim=True)
    return _quantize(g) if quantize else g


def rgb_to_y(x: torch.Tensor, *, quantize: bool = False) -> torch.Tensor:
    """Y of MATLAB ``rgb2ycbcr``: (B, 3, H, W) RGB in [0, 1] → (B, 1, H, W) in [16, 235]/255."""
    _check_rgb(x)
    w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    y = (x * w).sum(1, keepdim=True) + Y_OFFSET
    return _quantize(y) if quantize else y


def to_channels(x: torch.Tensor, channels: str, *, quantize: bool = False) -> torch.Tensor:
    """Select what a full-reference metric compares: ``"rgb"`` (as is), ``"y"`` or ``"gray"``.

    A one-channel input is returned unchanged for any choice (it is already grey).
    """
    if channels not in ("rgb", "y", "gray"):
        raise ValueError(f"channels={channels!r} is not one of 'rgb', 'y', 'gray'")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 3, H, W) RGB or (B, 1, H, W) grey, got {tuple(x.shape)}")
    if x.shape[1] == 1 or channels == "rgb":
        return x
    return rgb_to_y(x, quantize=quantize) if channels == "y" else rgb_to_gray(x, quantize=quantize)
