"""VSI, the Visual Saliency-induced Index (Zhang, Shen, Li, IEEE TIP 2014).

Saliency from SDSP (Zhang, Gu, Li, ICIP 2013: log-Gabor band-pass response of CIELAB ×
centre prior × warm-colour prior), gradient magnitude from the Scharr operator on the L of the
LMN opponent space, chroma similarity on M and N, all combined as in eq. (10) of the VSI paper
with its constants and pooled with the maximum saliency as the weight. As in the reference
scores we calibrate against (IQA-Optimization's reimplementation; there is no official MATLAB
score for these images), SDSP runs at full resolution rather than on a 256×256 resize; the
images are then averaged down by f = max(1, round(min(H, W) / 256)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from visionzoo.iqa.classical.ssim import _auto_factor, _check_pair

# VSI paper, Section III-C.
C_VS, C_GM, C_CHROM = 1.27, 386.0, 130.0
ALPHA, LAMBDA = 0.40, 0.020
# SDSP paper: log-Gabor σ_F, ω0; centre-prior σ_D (pixels); colour-prior σ_C.
SIGMA_F, OMEGA_0, SIGMA_D, SIGMA_C = 1.34, 0.021, 145.0, 0.001

_LMN = ((0.06, 0.63, 0.27), (0.30, 0.04, -0.35), (0.34, -0.60, 0.17))
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169),
               (0.019334, 0.119193, 0.950227))  # fmt: skip
_WHITE_D65 = (0.950456, 1.0, 1.088754)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] → CIELAB (D65): (B, 3, H, W) → (B, 3, H, W) with L in [0, 100]."""
    x = x.clamp(0, 1)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(_RGB_TO_XYZ, dtype=x.dtype, device=x.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    e = 6 / 29
    f = torch.where(xyz > e**3, xyz.clamp_min(e**3) ** (1 / 3), xyz / (3 * e**2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=1)


def _freq(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # MATLAB ((1:n) - (fix(n/2) + 1)) / (n - mod(n, 2)), then ifftshift: 0 frequency first.
    u = (torch.arange(n, dtype=dtype, device=device) - n // 2) / (n - n % 2)
    return torch.fft.ifftshift(u)


def log_gabor(rows: int, cols: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """SDSP's isotropic log-Gabor transfer function, DC first: (rows, cols); 0 at DC and r > 0.5."""
    v, u = _freq(rows, dtype, device)[:, None], _freq(cols, dtype, device)[None, :]
    r = (u**2 + v**2).sqrt()
    keep = (r > 0) & (r**2 <= 0.25)
    lg = torch.exp(-(torch.log(r.clamp_min(1e-12) / OMEGA_0) ** 2) / (2 * SIGMA_F**2))
    return torch.where(keep, lg, 0)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x - lo.view(shape)) / (hi - lo).clamp_min(1e-12).view(shape)


def sdsp(x: torch.Tensor) -> torch.Tensor:
    """SDSP saliency of (B, 3, H, W) RGB in [0, 1] → (B, 1, H, W) in [0, 1] (min-max scaled)."""
    b, _, h, w = x.shape
    lab = rgb_to_lab(x)
    lg = log_gabor(h, w, dtype=x.dtype, device=x.device)
    band = torch.fft.ifft2(torch.fft.fft2(lab) * lg).real
    sf = band.pow(2).sum(1, keepdim=True).sqrt()
    yy = torch.arange(h, dtype=x.dtype, device=x.device)[:, None] - h / 2
    xx = torch.arange(w, dtype=x.dtype, device=x.device)[None, :] - w / 2
    sd = torch.exp(-(yy**2 + xx**2) / SIGMA_D**2)
    ab = _minmax(lab[:, 1:2]) ** 2 + _minmax(lab[:, 2:3]) ** 2
    sc = 1 - torch.exp(-ab / SIGMA_C**2)
    return _minmax(sf * sd * sc)


def vsi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """VSI of each pair: (B, 3, H, W) RGB in [0, 1] × 2 → (B,), higher is better (1 = equal).

    Symmetric in x and y. Runs in the input dtype (float64 recommended for scoring).
    """
    _check_pair(x, y)
    if x.shape[1] != 3:
        raise ValueError(f"vsi needs RGB images (B, 3, H, W), got {tuple(x.shape)}")
    vs1, vs2 = sdsp(x), sdsp(y)
    lmn = torch.tensor(_LMN, dtype=x.dtype, device=x.device)
    lmn1 = torch.einsum("ij,bjhw->bihw", lmn, x * 255)
    lmn2 = torch.einsum("ij,bjhw->bihw", lmn, y * 255)
    f = _auto_factor(*x.shape[-2:])
    if f > 1:
        vs1, vs2, lmn1, lmn2 = (F.avg_pool2d(t, f) for t in (vs1, vs2, lmn1, lmn2))
    scharr = torch.tensor([[3.0, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=x.dtype, device=x.device)
    kernels = torch.stack((scharr, scharr.T))[:, None] / 16

    def gradient(lum: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(lum, kernels, padding=1)
        return g.pow(2).sum(1, keepdim=True).sqrt()

    g1, g2 = gradient(lmn1[:, :1]), gradient(lmn2[:, :1])
    s_vs = (2 * vs1 * vs2 + C_VS) / (vs1**2 + vs2**2 + C_VS)
    s_gm = (2 * g1 * g2 + C_GM) / (g1**2 + g2**2 + C_GM)
    m1, n1, m2, n2 = lmn1[:, 1:2], lmn1[:, 2:3], lmn2[:, 1:2], lmn2[:, 2:3]
    s_c = (2 * m1 * m2 + C_CHROM) / (m1**2 + m2**2 + C_CHROM)
    s_c = s_c * (2 * n1 * n2 + C_CHROM) / (n1**2 + n2**2 + C_CHROM)
    # real(z^λ) of MATLAB's reference for a negative chroma product.
    chroma = s_c.abs() ** LAMBDA * torch.where(s_c < 0, math.cos(math.pi * LAMBDA), 1.0)
    weight = torch.maximum(vs1, vs2)
    score = s_gm**ALPHA * s_vs * chroma * weight
    return score.sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))
