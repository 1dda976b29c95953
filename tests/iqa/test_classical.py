"""Classical IQA metrics against published reference scores, scikit-image, torchmetrics and PIL.

Calibration: the five TID2013 pairs of IQA-PyTorch's ``ResultsCalibra`` with the scores of each
metric's original implementation (``results_official.csv``; how each was produced is in
``../shared/data/README.md``: PSNR over RGB, SSIM/MS-SSIM/NIQE/BRISQUE on MATLAB rgb2gray of
the 8-bit image, SSIM without its automatic downsampling, VSI from IQA-Optimization).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import piq
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)

from visionzoo.iqa.classical import brisque, imresize, ms_ssim, niqe, psnr, ssim, vsi

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CALIB = DATA / "iqa_calibration"
NAMES = ("I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp")
needs_data = pytest.mark.skipif(
    not CALIB.is_dir(), reason=f"calibration data not found at {CALIB} (../shared/data absent)"
)


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1) / 255.0


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    ref = torch.stack([_load(CALIB / "ref_dir" / n) for n in NAMES]).double()
    dist = torch.stack([_load(CALIB / "dist_dir" / n) for n in NAMES]).double()
    return ref, dist


@pytest.fixture(scope="module")
def official() -> dict[str, list[float]]:
    with open(CALIB / "results_official.csv", newline="") as f:
        rows = {r["Method"]: r for r in csv.DictReader(f)}
    return {m: [float(rows[m][n]) for n in NAMES] for m in rows}


def _check(ours: torch.Tensor, ref: list[float], tol: list[float], name: str) -> None:
    for n, o, r, t in zip(NAMES, ours.tolist(), ref, tol, strict=True):
        assert abs(o - r) <= t, f"{name} on {n}: ours {o:.5f} vs official {r:.5f} (tol {t})"


@needs_data
def test_psnr_ssim_msssim_match_official(pairs, official) -> None:
    ref, dist = pairs
    _check(psnr(dist, ref), official["psnr"], [0.01] * 5, "psnr")
    s = ssim(dist, ref, channels="gray", downsample=False, quantize=True)
    _check(s, official["ssim"], [5e-4] * 5, "ssim")
    ms = ms_ssim(dist, ref, channels="gray", quantize=True)
    _check(ms, official["ms_ssim"], [5e-3] * 5, "ms_ssim")


@needs_data
def test_vsi_matches_official(pairs, official) -> None:
    ref, dist = pairs
    _check(vsi(dist, ref), official["vsi"], [1e-2] * 5, "vsi")


@pytest.fixture(scope="module")
def no_reference(pairs) -> dict[str, torch.Tensor]:
    ref, dist = pairs
    images = torch.cat((dist, ref[:1]))  # the five distorted images, then reference I03
    return {"niqe": niqe(images), "brisque": brisque(images)}


@needs_data
def test_niqe_brisque_match_official(no_reference, official) -> None:
    n_ref = official["niqe"]
    _check(no_reference["niqe"][:5], n_ref, [0.02 * abs(v) for v in n_ref], "niqe")
    b_ref = official["brisque"]
    # 5 %, or 0.5 absolute for the scores near 0 of BRISQUE's 0–100 scale (below 10).
    tol = [0.05 * abs(v) if abs(v) >= 10 else 0.5 for v in b_ref]
    _check(no_reference["brisque"][:5], b_ref, tol, "brisque")


@needs_data
def test_no_reference_scores_rank_distortion(no_reference) -> None:
    # I03 is the most degraded pair (lowest SSIM): both scores must rate its reference better.
    for name in ("niqe", "brisque"):
        assert no_reference[name][0] > no_reference[name][5] + 10, name


def _random_pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    # Correlated target: SSIM far from 0 so the comparison is informative.
    y = (x + 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_psnr_ssim_match_scikit_image() -> None:
    x, y = _random_pair((2, 3, 40, 48))
    for i in range(2):
        a, b = x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy()
        ref_psnr = peak_signal_noise_ratio(a, b, data_range=1.0)
        assert psnr(x, y)[i].item() == pytest.approx(ref_psnr, abs=1e-4)
        kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
        ref_rgb = structural_similarity(a, b, channel_axis=2, **kw)
        ours = ssim(x, y, channels="rgb", downsample=False)[i].item()
        assert ours == pytest.approx(ref_rgb, abs=1e-4)
        ref_grey = structural_similarity(a[..., 0], b[..., 0], **kw)
        ours = ssim(x[:, :1], y[:, :1], downsample=False)[i].item()
        assert ours == pytest.approx(ref_grey, abs=1e-4)


def test_ssim_msssim_match_torchmetrics() -> None:
    # Sides divisible by 16: torchmetrics' floor 2×2 pooling then equals msssim.m's.
    x, y = _random_pair((1, 3, 176, 192), seed=1)
    tm = structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none"
    )
    # torchmetrics averages a same-size map of reflection-padded images.
    ours = ssim(x, y, channels="rgb", downsample=False, padding="reflect")
    torch.testing.assert_close(ours, tm, atol=1e-4, rtol=0)
    tm = multiscale_structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none"
    )
    ours = ms_ssim(x, y, channels="rgb", padding="reflect")
    torch.testing.assert_close(ours, tm, atol=1e-4, rtol=0)
    # piq keeps msssim.m's valid region at every scale.
    ref = piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none")
    torch.testing.assert_close(ms_ssim(x, y, channels="rgb"), ref, atol=1e-4, rtol=0)


def test_ssim_auto_downsampling_follows_wang() -> None:
    x, y = _random_pair((1, 1, 390, 300), seed=2)
    # round(300 / 256) = 1: nothing to do; at 400 px f = 2 → 2×2 block means (even sides).
    assert ssim(x, y) == ssim(x, y, downsample=False)
    x2, y2 = _random_pair((1, 1, 400, 416), seed=3)
    pooled = ssim(
        torch.nn.functional.avg_pool2d(x2, 2), torch.nn.functional.avg_pool2d(y2, 2), downsample=1
    )
    torch.testing.assert_close(ssim(x2, y2), pooled)


def _matlab_bicubic_1d(v: np.ndarray, scale: float) -> np.ndarray:
    """Hand-written 1-D MATLAB imresize (antialiased Keys cubic, mirrored borders), loop form."""

    def cubic(t: float) -> float:
        a = abs(t)
        if a <= 1:
            return 1.5 * a**3 - 2.5 * a**2 + 1
        if a <= 2:
            return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
        return 0.0

    n = len(v)
    out = []
    for j in range(1, math.ceil(n * scale) + 1):
        centre = j / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
        acc = wsum = 0.0
        for k in range(math.floor(centre - 2 / scale), math.ceil(centre + 2 / scale) + 1):
            w = scale * cubic(scale * (centre - k))
            m = k
            while m < 1 or m > n:  # mirror: 0 → 1, -1 → 2, n+1 → n
                m = 1 - m if m < 1 else 2 * n + 1 - m
            acc += w * v[m - 1]
            wsum += w
        out.append(acc / wsum)
    return np.array(out)


def test_imresize_matches_hand_kernel_and_pil() -> None:
    v = np.array([0.0, 10.0, 3.0, 7.0, 1.0, 9.0, 4.0, 2.0, 8.0])
    for scale in (0.5, 0.3):
        ours = imresize(torch.from_numpy(v)[None, None, None], scale)[0, 0, 0].numpy()
        np.testing.assert_allclose(ours, _matlab_bicubic_1d(v, scale), atol=1e-12)
    # PIL's float resize uses the same stretched a = -0.5 kernel; only the borders differ.
    a = np.random.RandomState(0).rand(40, 52).astype(np.float32)
    for size, factor in (((26, 20), 0.5), ((104, 80), 2.0)):
        pil = np.asarray(Image.fromarray(a, mode="F").resize(size, Image.BICUBIC))
        ours = imresize(torch.from_numpy(a).double()[None, None], factor)[0, 0].numpy()
        assert ours.shape == pil.shape
        np.testing.assert_allclose(ours[4:-4, 4:-4], pil[4:-4, 4:-4], atol=1e-5)


def test_bad_input_is_reported() -> None:
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="channels"):
        ssim(x, x, channels="lab")
    with pytest.raises(ValueError, match="psnr"):
        psnr(x, x[..., :16])
    with pytest.raises(ValueError, match="96"):
        niqe(x)
