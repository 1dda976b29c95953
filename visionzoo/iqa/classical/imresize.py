"""MATLAB ``imresize`` (bicubic or bilinear, with antialiasing) as two matrix products.

MATLAB resizes separably: each output sample ``x`` (1-based) maps to input position
``u = x / s + (1 - 1 / s) / 2``; when shrinking (``s < 1``) with antialiasing the kernel is
stretched to ``s · k(s · t)`` (width ``w / s``); weights are normalised to sum 1, and taps
outside the image are mirrored (``'symmetric'``). Built here as dense (out, in) matrices, so a
(B, C, H, W) batch resizes on any device as ``A_h @ x @ A_wᵀ``. NIQE and BRISQUE build their
second scale with ``imresize(im, 0.5)``, which no torch or PIL resize reproduces at the borders.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch


def _cubic(t: torch.Tensor) -> torch.Tensor:
    # Keys' cubic convolution with a = -0.5 (MATLAB's 'bicubic').
    a = t.abs()
    a2, a3 = a**2, a**3
    near = 1.5 * a3 - 2.5 * a2 + 1
    far = -0.5 * a3 + 2.5 * a2 - 4 * a + 2
    return torch.where(a <= 1, near, torch.where(a <= 2, far, torch.zeros_like(a)))


def _triangle(t: torch.Tensor) -> torch.Tensor:
    return (1 - t.abs()).clamp_min(0)


_KERNELS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "cubic": (_cubic, 4.0),
    "bilinear": (_triangle, 2.0),
}


@lru_cache(maxsize=64)
def resize_matrix(
    in_len: int, out_len: int, scale: float, kernel: str = "cubic", antialias: bool = True
) -> torch.Tensor:
    """The (out_len, in_len) float64 matrix of MATLAB ``imresize``'s 1-D resampling."""
    if kernel not in _KERNELS:
        raise ValueError(f"kernel={kernel!r} is not one of {sorted(_KERNELS)}")
    fn, width = _KERNELS[kernel]
    if scale < 1 and antialias:

        def h(t: torch.Tensor) -> torch.Tensor:
            return scale * fn(scale * t)

        width = width / scale
    else:
        h = fn
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)
    w = h(u[:, None] - idx)
    w = w / w.sum(1, keepdim=True)
    # 1-based idx → 0-based, mirrored with period 2n ('symmetric' boundary).
    i = (idx.long() - 1) % (2 * in_len)
    i = torch.where(i < in_len, i, 2 * in_len - 1 - i)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, i, w)
    return mat


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    kernel: str = "cubic",
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB ``imresize(x, scale)`` or ``imresize(x, [h w])`` on (…, H, W) float tensors.

    Give exactly one of ``scale`` (output ``ceil(scale · H)`` × ``ceil(scale · W)``) or
    ``size`` = (h, w). ``kernel``: ``"cubic"`` (MATLAB's default) or ``"bilinear"``. Returns
    (…, h, w) in the dtype of ``x``; differentiable.
    """
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale= or size=")
    in_h, in_w = x.shape[-2:]
    if size is None:
        if scale <= 0:
            raise ValueError(f"imresize: scale={scale} must be positive")
        out_h, out_w = math.ceil(scale * in_h), math.ceil(scale * in_w)
        s_h = s_w = float(scale)
    else:
        out_h, out_w = size
        s_h, s_w = out_h / in_h, out_w / in_w
    a_h = resize_matrix(in_h, out_h, s_h, kernel, antialias).to(x)
    a_w = resize_matrix(in_w, out_w, s_w, kernel, antialias).to(x)
    return a_h @ x @ a_w.T
