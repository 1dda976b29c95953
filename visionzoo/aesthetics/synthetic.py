"""Synthetic aesthetics data whose scores follow stated composition rules, written in the AVA
layout (``AVA.txt`` + ``images/<id>.jpg`` + id lists ``splits/{train,val}.txt``) and read back
by the AVA reader.

Each image is a textured background of one hue with a disc (the subject) of another hue. Four
attributes are drawn independently and uniformly per image, each scored in [0, 1]:

- **placement** (rule of thirds): ``1 − min(d / d0, 1)``, ``d`` the distance of the subject's
  centre to the nearest of the four thirds intersections and ``d0 = √2·size/6`` the distance
  from the image centre to one of them (a centred subject scores 0);
- **colour harmony**: ``|cos Δh|`` of the hue difference Δh between subject and background
  (analogous Δh≈0° and complementary Δh≈180° score 1, Δh=90° scores 0);
- **sharpness**: ``1 − σ/σ_max`` for a Gaussian blur of radius σ ∈ [0, σ_max];
- **exposure**: ``1 − |e|`` for a gain of ``2^e``, e ∈ [−1, 1] stops.

The rule-based mean score is ``μ = 1 + 8 · Σ w_a q_a`` with weights placement 0.2, harmony 0.2,
sharpness 0.3, exposure 0.3, so μ ∈ [1, 9]. Each image gets ``n ~ U{votes_min..votes_max}``
voters whose scores are ``round(N(μ, vote_std))`` clipped to 1..10: vote totals differ between
images, and the label is the empirical vote distribution, as in AVA.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from visionzoo.aesthetics.formats import NUM_BINS, write_ava_txt
from visionzoo.core.synthetic import write_split
from visionzoo.registry import register_generator

WEIGHTS = {"placement": 0.2, "harmony": 0.2, "sharpness": 0.3, "exposure": 0.3}
MAX_BLUR = 2.5  # σ_max at 96 px (scaled with the image size)
MAX_STOPS = 1.0  # exposure range ±1 stop


def rule_mean(quality: dict[str, float]) -> float:
    """The documented rule: ``1 + 8 · Σ w_a q_a`` over the attribute scores ``q_a`` ∈ [0, 1]."""
    return 1.0 + 8.0 * sum(WEIGHTS[k] * quality[k] for k in WEIGHTS)


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, sat, val)) * 255.0


def render(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict[str, float]]:
    """One image and its attribute scores ``{placement, harmony, sharpness, exposure}``."""
    hue_bg = rng.uniform(0, 1)
    delta = rng.uniform(0, 0.5) * rng.choice([-1, 1])  # hue difference, in turns
    yy, xx = np.mgrid[0:size, 0:size] / size
    shade = 0.85 + 0.3 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None] / 2
    texture = rng.normal(0, 14, (size, size, 1))  # fine detail, so blur shows everywhere
    bg = _rgb(hue_bg, 0.55, 0.55) * shade + texture
    image = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    radius = rng.uniform(0.10, 0.16) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    fill = tuple(int(v) for v in _rgb(hue_bg + delta, 0.8, 0.9))
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    thirds = [(a * size / 3, b * size / 3) for a in (1, 2) for b in (1, 2)]
    d = min(np.hypot(cx - px, cy - py) for px, py in thirds)
    blur = rng.uniform(0, MAX_BLUR)
    stops = rng.uniform(-MAX_STOPS, MAX_STOPS)
    image = image.filter(ImageFilter.GaussianBlur(blur * size / 96))
    exposed = np.asarray(image, np.float64) * 2.0**stops
    image = Image.fromarray(np.clip(exposed, 0, 255).astype(np.uint8))
    quality = {
        "placement": 1.0 - min(d / (np.sqrt(2) * size / 6), 1.0),
        "harmony": abs(np.cos(2 * np.pi * delta)),
        "sharpness": 1.0 - blur / MAX_BLUR,
        "exposure": 1.0 - abs(stops) / MAX_STOPS,
    }
    return image, quality


def draw_votes(rng: np.random.Generator, mean: float, count: int, std: float) -> list[int]:
    """Vote counts for scores 1..10 of ``count`` voters scoring ``round(N(mean, std))``."""
    scores = np.clip(np.rint(rng.normal(mean, std, count)), 1, NUM_BINS).astype(int)
    return np.bincount(scores - 1, minlength=NUM_BINS).tolist()


@register_generator("aesthetics_composition")
def write_aesthetics_composition(
    out_dir: Path,
    *,
    num_train: int = 2000,
    num_val: int = 200,
    size: int = 64,
    votes_min: int = 50,
    votes_max: int = 250,
    vote_std: float = 1.4,
    seed: int = 0,
) -> None:
    """Write ``AVA.txt``, ``images/<id>.jpg`` and ``splits/{train,val}.txt`` (disjoint ids)."""
    rng = np.random.default_rng(seed)
    (out_dir / "images").mkdir(parents=True)
    rows = []
    ids = [str(100_000 + i) for i in range(num_train + num_val)]
    for image_id in ids:
        image, quality = render(rng, size)
        image.save(out_dir / "images" / f"{image_id}.jpg", quality=95)
        count = int(rng.integers(votes_min, votes_max + 1))
        votes = draw_votes(rng, rule_mean(quality), count, vote_std)
        rows.append((image_id, votes, int(rng.integers(0, 67)), 0, int(rng.integers(1, 1400))))
    write_ava_txt(out_dir / "AVA.txt", rows)
    write_split(out_dir, "train", ids[:num_train])
    write_split(out_dir, "val", ids[num_train:])
