"""BRISQUE (Mittal, Moorthy, Bovik, "No-reference image quality assessment in the spatial
domain", IEEE TIP 2012) with the official LIVE ε-SVR model.

Follows ``brisque_feature.m`` / ``brisquescore.m``: MATLAB rgb2gray on the 0..255 scale; at two
scales (the second from MATLAB ``imresize(im, 0.5)``) the MSCN image (7×7 Gaussian, σ = 7/6,
zero-padded ``filter2``; flat areas as MATLAB's ``conv2`` rounds them, see ``nss.mscn``) gives a
GGD fit (α, σ²) and, for each of the four circularly shifted pairwise products over the whole
image, an AGGD fit (α, η, σ_l², σ_r²): 36 features. They are
mapped to [-1, 1] with ``svm-scale``'s range file and scored by the RBF SVR
(Σ_i c_i exp(-γ‖x - s_i‖²) - ρ). Model: ``params/brisque_live.npz`` from
``scripts/convert_iqa_params.py``. Scores are roughly 0 (best) … 100 (worst).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from visionzoo.iqa.classical._filters import fspecial_gaussian
from visionzoo.iqa.classical.color import rgb_to_gray
from visionzoo.iqa.classical.imresize import imresize
from visionzoo.iqa.classical.nss import fit_aggd, fit_ggd, gamma_fn, mscn, shifted_products

PARAMS = Path(__file__).resolve().parent / "params" / "brisque_live.npz"
MIN_SIZE = 16  # two scales of a 7×7 window need a few pixels beyond it


@lru_cache(maxsize=1)
def _model() -> dict[str, torch.Tensor]:
    if not PARAMS.is_file():
        raise FileNotFoundError(
            f"{PARAMS}: BRISQUE model missing; run scripts/convert_iqa_params.py"
        )
    with np.load(PARAMS) as d:
        return {k: torch.as_tensor(d[k]) for k in d.files}


def brisque_features(gray: torch.Tensor) -> torch.Tensor:
    """The 36 BRISQUE features: (B, 1, H, W) grey on 0..255 → (B, 36), float64 advised."""
    window = fspecial_gaussian(7, 7 / 6, dtype=gray.dtype, device=gray.device)
    feats = []
    im = gray
    for scale in (1, 2):
        structdis, _ = mscn(im, window, padding="zeros", flat="conv2")
        alpha, sigma_sq = fit_ggd(structdis.flatten(1))
        feats += [alpha, sigma_sq]
        a, left, right = fit_aggd(shifted_products(structdis).flatten(2))  # (4, B) each
        eta = (right - left) * gamma_fn(2 / a) / gamma_fn(1 / a)
        eta = eta * (gamma_fn(1 / a) / gamma_fn(3 / a)).sqrt()
        for k in range(4):
            feats += [a[k], eta[k], left[k] ** 2, right[k] ** 2]
        if scale == 1:
            im = imresize(im, 0.5)
    return torch.stack(feats, dim=-1)


def brisque(x: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """BRISQUE of each image: (B, 3, H, W) RGB or (B, 1, H, W) grey in [0, 1] → (B,), lower better.

    ``quantize`` rounds the grey image to 8 bits, as ``brisquescore.m`` does (uint8 + rgb2gray).
    Runs in float64 on the input's device.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"brisque: expected (B, 3, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < MIN_SIZE:
        raise ValueError(f"brisque: image {tuple(x.shape[-2:])} is below {MIN_SIZE} px per side")
    x = x.double()
    gray = rgb_to_gray(x) if x.shape[1] == 3 else x
    if quantize:
        gray = torch.floor(gray.clamp(0, 1) * 255 + 0.5) / 255
    feats = brisque_features(gray * 255)
    m = {k: v.to(x.device) for k, v in _model().items()}
    lo, hi = m["scale_lower"], m["scale_upper"]
    scaled = lo + (hi - lo) * (feats - m["feature_min"]) / (m["feature_max"] - m["feature_min"])
    dist_sq = torch.cdist(scaled, m["support_vectors"]).pow(2)
    return torch.exp(-m["gamma"] * dist_sq) @ m["dual_coef"] - m["rho"]
