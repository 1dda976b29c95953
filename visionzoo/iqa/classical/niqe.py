"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan, Bovik, IEEE SPL 2012).

Follows the LIVE release ``computequality.m`` with its pristine model (``params/niqe_pris.npz``,
converted by ``scripts/convert_iqa_params.py``): MATLAB rgb2gray on the 0..255 scale, the image
cropped to whole 96×96 blocks, MSCN with the model's 7×7 Gaussian window and replicate borders,
18 AGGD features per block at two scales (the second from MATLAB ``imresize(im, 0.5)``, blocks
48×48), the image's MVG fitted over **all** blocks (the sharpness selection is used only when
training the pristine model), and the distance sqrt(Δμᵀ pinv((Σ₁ + Σ₂)/2) Δμ). Lower is better.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from visionzoo.iqa.classical.color import rgb_to_gray
from visionzoo.iqa.classical.imresize import imresize
from visionzoo.iqa.classical.nss import fit_aggd, gamma_fn, mscn, shifted_products

PARAMS = Path(__file__).resolve().parent / "params" / "niqe_pris.npz"
BLOCK = 96


@lru_cache(maxsize=1)
def _model() -> dict[str, torch.Tensor]:
    if not PARAMS.is_file():
        raise FileNotFoundError(f"{PARAMS}: NIQE model missing; run scripts/convert_iqa_params.py")
    with np.load(PARAMS) as d:
        return {k: torch.from_numpy(d[k]) for k in ("mu", "cov", "window")}


def _block_features(structdis: torch.Tensor, block: int) -> torch.Tensor:
    """(B, 1, H, W) MSCN → (B, nblocks, 18) per-block features of ``computefeature.m``."""
    b = structdis.shape[0]
    # (B, nr, nc, block, block); circshift in computefeature wraps inside each block.
    blocks = structdis[:, 0].unfold(1, block, block).unfold(2, block, block)
    blocks = blocks.reshape(b, -1, block, block)
    alpha, left, right = fit_aggd(blocks.flatten(-2))
    scale = (gamma_fn(1 / alpha) / gamma_fn(3 / alpha)).sqrt()
    feats = [alpha, (left + right) * scale / 2]
    pairs = shifted_products(blocks).flatten(-2)  # (4, B, nblocks, block²)
    a, lft, rgt = fit_aggd(pairs)
    s = (gamma_fn(1 / a) / gamma_fn(3 / a)).sqrt()
    beta_l, beta_r = lft * s, rgt * s
    mean = (beta_r - beta_l) * gamma_fn(2 / a) / gamma_fn(1 / a)
    for k in range(4):
        feats += [a[k], mean[k], beta_l[k], beta_r[k]]
    return torch.stack(feats, dim=-1)


def niqe_features(gray: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) grey on 0..255, H, W multiples of 96 → (B, nblocks, 36) block features."""
    feats = []
    im = gray
    for scale in (1, 2):
        structdis, _ = mscn(im, window, padding="replicate")
        feats.append(_block_features(structdis, BLOCK // scale))
        if scale == 1:
            im = imresize(im, 0.5)
    return torch.cat(feats, dim=-1)


def _nan_mean_cov(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``nanmean`` (per column), ``nancov`` (complete rows, N-1): (B, N, D) → mean, cov."""
    finite = torch.isfinite(f)
    mean = torch.where(finite, f, 0).sum(1) / finite.sum(1)
    rows = finite.all(-1, keepdim=True)
    n = rows.sum(1, keepdim=True)  # (B, 1, 1)
    clean = torch.where(rows, f, 0)
    centred = torch.where(rows, clean - clean.sum(1, keepdim=True) / n, 0)
    cov = centred.transpose(1, 2) @ centred / (n - 1)
    return mean, cov


def niqe(x: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """NIQE of each image: (B, 3, H, W) RGB or (B, 1, H, W) grey in [0, 1] → (B,), lower is better.

    ``quantize`` rounds the grey image to 8 bits, as MATLAB's rgb2gray does on the ``uint8``
    images the reference scores come from. Needs H, W ≥ 96 (whole blocks; the rest is cropped).
    Runs in float64 on the input's device.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"niqe: expected (B, 3, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    h, w = (x.shape[-2] // BLOCK) * BLOCK, (x.shape[-1] // BLOCK) * BLOCK
    if h == 0 or w == 0:
        raise ValueError(f"niqe: image {tuple(x.shape[-2:])} is smaller than one 96×96 block")
    x = x.double()
    gray = rgb_to_gray(x, quantize=quantize) if x.shape[1] == 3 else x
    if quantize and x.shape[1] == 1:
        gray = torch.floor(gray.clamp(0, 1) * 255 + 0.5) / 255
    gray = gray[..., :h, :w] * 255
    model = {k: v.to(x.device) for k, v in _model().items()}
    feats = niqe_features(gray, model["window"])
    mu, cov = _nan_mean_cov(feats)
    d = model["mu"] - mu
    inv = torch.linalg.pinv((model["cov"] + cov) / 2)
    return torch.einsum("bi,bij,bj->b", d, inv, d).sqrt()
