"""The synthetic image-quality set: procedural pristine images, five distortions at five levels,
and opinion scores from a stated deterministic rule, written in the TID2013 layout
(``mos_with_names.txt``, ``mos_std.txt``, ``distorted_images/``, ``reference_images/``) so the
TID2013 reader reads it back.

The rule (``rule_mos``): distortion type ``t`` at level ``l`` ∈ 1..5 scores

    MOS = 8 − 7 · w_t · l / 5,    w = {blur 1.0, noise 0.9, jpeg 0.8, contrast 0.7, colour 0.6}

(a scale like TID2013's 0..9: 1.0 for the strongest blur, 7.16 for the mildest colour change);
its standard deviation is ``0.3 + 0.1 · l``. Scores depend on type and level only, never on
the content, so a model must tell how strong each distortion is on any picture; held-out
reference images (``data.splits``) test exactly that.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from visionzoo.iqa.formats import write_tid2013
from visionzoo.registry import register_generator

LEVELS = 5
WEIGHTS = {"blur": 1.0, "noise": 0.9, "jpeg": 0.8, "contrast": 0.7, "colour": 0.6}
TYPES = tuple(WEIGHTS)  # type code k+1 in file names, in this order
# Per level 1..5:
BLUR_SIGMA = (0.8, 1.5, 2.4, 3.6, 5.0)  # Gaussian σ (px)
NOISE_SIGMA = (4.0, 8.0, 14.0, 22.0, 32.0)  # additive white Gaussian noise σ (of 255)
JPEG_QUALITY = (45, 25, 14, 8, 4)  # PIL JPEG quality
CONTRAST = (0.8, 0.65, 0.5, 0.35, 0.2)  # kept fraction of the deviation from the mean grey
SATURATION = (0.8, 0.6, 0.4, 0.2, 0.0)  # kept fraction of the deviation from the luma


def rule_mos(kind: str, level: int) -> float:
    """The documented opinion score of distortion ``kind`` at ``level`` (1..5)."""
    if kind not in WEIGHTS or not 1 <= level <= LEVELS:
        raise ValueError(f"no MOS rule for distortion {kind!r} at level {level}")
    return 8.0 - 7.0 * WEIGHTS[kind] * level / LEVELS


def rule_std(level: int) -> float:
    """The documented standard deviation of the opinion score at ``level``."""
    return 0.3 + 0.1 * level


def pristine(rng: np.random.Generator, size: int) -> np.ndarray:
    """A procedural "natural" picture, (size, size, 3) uint8: a 1/f (fractal) luminance field,
    a few smooth-edged coloured blobs and fine grain, with full contrast (2–98 % percentiles at
    5 % / 95 %) and vivid colours, so contrast and saturation losses are visible."""
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / np.maximum(
        freq, 1.0 / size
    ) ** rng.uniform(1.6, 2.2)
    field = np.real(np.fft.ifft2(spectrum))
    yy, xx = np.mgrid[0:size, 0:size] / size
    hue = rng.uniform(0, 1, 3)
    colour = np.zeros((size, size, 3))
    for k in range(int(rng.integers(3, 7))):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
        blob = 1 / (1 + np.exp((np.hypot(xx - cx, yy - cy) - r) * size / 2.0))
        tint = 0.5 + 0.5 * np.cos(2 * np.pi * (hue[k % 3] + np.array([0, 1 / 3, 2 / 3])))
        colour += blob[..., None] * (tint - 0.5)
    lum = field + 0.25 * rng.normal(size=(size, size)) * field.std()
    lum = (lum - lum.mean()) / lum.std()
    base = np.cos(2 * np.pi * (hue[0] + np.array([0, 1 / 3, 2 / 3]))) * 0.35
    image = lum[..., None] * 0.6 + base + 1.2 * colour
    lo, hi = np.percentile(image, (2, 98))
    image = 0.05 + 0.9 * (image - lo) / (hi - lo)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def distort(image: np.ndarray, kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with distortion ``kind`` at ``level`` (1..5) applied."""
    i = level - 1
    x = image.astype(np.float64)
    if kind == "blur":
        x = ndimage.gaussian_filter(x, (BLUR_SIGMA[i], BLUR_SIGMA[i], 0), mode="reflect")
    elif kind == "noise":
        x = x + rng.normal(0, NOISE_SIGMA[i], x.shape)
    elif kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=JPEG_QUALITY[i])
        x = np.asarray(Image.open(buffer).convert("RGB"), np.float64)
    elif kind == "contrast":
        x = x.mean() + CONTRAST[i] * (x - x.mean())
    elif kind == "colour":
        luma = x @ np.array([0.299, 0.587, 0.114])
        x = luma[..., None] + SATURATION[i] * (x - luma[..., None])
    else:
        raise ValueError(f"unknown distortion {kind!r}; choose one of {', '.join(TYPES)}")
    return np.clip(x, 0, 255).round().astype(np.uint8)


@register_generator("iqa_distortions")
def write_iqa_distortions(
    out_dir: Path, *, num_references: int = 20, size: int = 192, seed: int = 0
) -> None:
    """Write ``num_references`` pristine images (``reference_images/I01.png`` ...) and their 25
    distorted versions each (``distorted_images/i01_<type>_<level>.png``, type 1..5 in the
    order of ``TYPES``), with ``mos_with_names.txt`` / ``mos_std.txt`` from the rule."""
    if num_references < 1 or size < 16:
        raise ValueError(f"iqa_distortions: num_references={num_references}, size={size}")
    rng = np.random.default_rng(seed)
    (out_dir / "reference_images").mkdir(parents=True)
    (out_dir / "distorted_images").mkdir()
    rows = []
    for r in range(1, num_references + 1):
        ref = pristine(rng, size)
        Image.fromarray(ref).save(out_dir / "reference_images" / f"I{r:02d}.png", compress_level=1)
        for t, kind in enumerate(TYPES, start=1):
            for level in range(1, LEVELS + 1):
                name = f"i{r:02d}_{t:02d}_{level}.png"
                Image.fromarray(distort(ref, kind, level, rng)).save(
                    out_dir / "distorted_images" / name,
                    compress_level=1,  # fast; lossless
                )
                rows.append((name, rule_mos(kind, level), rule_std(level)))
    write_tid2013(out_dir, rows)
