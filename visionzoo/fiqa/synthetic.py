"""Synthetic faces with controlled degradations at known levels, for checking that a quality
method follows image quality: the recognition family's procedurally drawn identities
(``render_face``), then one degradation per image — blur, low light, over-exposure, pose,
occlusion or noise — at a level in [0, 1] (0 = none).

Written as ``train/<id>/<k>.png`` and ``val/<id>/<k>.png`` (disjoint identities), a
``degradations.csv`` (``path,identity,type,level,quality`` with quality = 100·(1 − level)) and
a ``landmarks.csv`` (the ArcFace template points moved by the pose degradation; the renderer's
own small jitter, ±10° and ±5 % times ``nuisance``, is not in them).

Each degradation's parameter is linear in the level. Level 1 is severe but stops short of a
blank image (low light and over-exposure leave the features visible), as a real comparison set
holds only images a face detector found; ``nuisance`` < 1 keeps the undegraded captures
compliant, so a recogniser's errors come mostly from the degradations.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from visionzoo.recognition.align import ARCFACE_TEMPLATE
from visionzoo.recognition.synthetic import render_face, sample_identity
from visionzoo.registry import register_generator

DEGRADATIONS = ("blur", "low_light", "over_exposure", "pose", "occlusion", "noise")


def pose_matrix(level: float, size: int, side: float) -> np.ndarray:
    """(2, 3) affine of the pose degradation: in-plane roll of 30°·level and a horizontal
    squeeze (a crude yaw) of 45 %·level towards ``side`` (±1), about the image centre."""
    c = size / 2
    roll = np.deg2rad(30 * level) * side
    squeeze = 1 - 0.45 * level
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    linear = rot @ np.diag([squeeze, 1.0])
    offset = np.array([c, c]) - linear @ np.array([c, c]) + np.array([side * 0.2 * level * c, 0])
    return np.concatenate([linear, offset[:, None]], 1)


def degrade(
    image: np.ndarray, kind: str, level: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(degraded image, its (2, 3) geometric transform)`` of an RGB uint8 face at ``level``."""
    size = image.shape[0]
    out = image.astype(np.float32)
    matrix = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    if level <= 0:
        return image, matrix
    if kind == "blur":
        out = cv2.GaussianBlur(out, (0, 0), 0.1 + 6.0 * level * size / 64)
    elif kind == "low_light":
        out = 255 * (out / 255) ** (1 + level) * (1 - 0.7 * level)
    elif kind == "over_exposure":
        # low light's mirror image: the same curve applied to 255 − the image
        out = 255 - 255 * (1 - out / 255) ** (1 + level) * (1 - 0.7 * level)
    elif kind == "pose":
        matrix = pose_matrix(level, size, float(rng.choice([-1, 1])))
        out = cv2.warpAffine(out, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
    elif kind == "occlusion":
        # an opaque patch (a hand, a scarf) from the centre over one side of the face, its area
        # growing with the level; once wider than that side it reaches over the centre
        w, h = int(size * (0.25 + 0.45 * level)), int(size * (0.25 + 0.5 * level))
        x0 = min(size // 2, size - w) if rng.random() < 0.5 else max(size // 2 - w, 0)
        y0 = int(size * rng.uniform(0.3, 0.5))
        out[y0 : y0 + h, x0 : x0 + w] = rng.uniform(20, 235, 3)
    elif kind == "noise":
        out = out + rng.standard_normal(out.shape).astype(np.float32) * 75 * level
    else:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), matrix


@register_generator("degraded_faces")
def write_degraded_faces(
    out_dir: Path,
    *,
    num_train_ids: int = 80,
    num_val_ids: int = 20,
    images_per_id: int = 13,
    levels: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
    clean_per_id: int = 4,
    nuisance: float = 0.2,
    size: int = 64,
    seed: int = 0,
) -> None:
    """Per identity, ``images_per_id`` faces: the first ``clean_per_id`` clean (level 0), the
    others cycling through ``DEGRADATIONS`` × ``levels`` from a random start (clean again when
    more images than combinations). ``nuisance`` scales the renderer's own per-image pose,
    lighting, blur and noise (1 = the recognition set's; lower = more compliant captures)."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    combos = [(k, lv) for k in DEGRADATIONS for lv in levels]
    template = ARCFACE_TEMPLATE * size / 112  # where render_face draws eyes, nose and mouth
    labels, marks = [], []
    for i in range(num_train_ids + num_val_ids):
        split = "train" if i < num_train_ids else "val"
        name = f"id{i:04d}"
        (out_dir / split / name).mkdir(parents=True)
        identity = sample_identity(rng)
        start = int(rng.integers(len(combos)))
        for k in range(images_per_id):
            d = k - clean_per_id  # index among the degraded images
            kind, level = (
                ("none", 0.0) if d < 0 or d >= len(combos) else combos[(start + d) % len(combos)]
            )
            face = render_face(identity, rng, size, nuisance)
            image, matrix = degrade(face, kind, level, rng)
            rel = f"{split}/{name}/{k}.png"
            cv2.imwrite(str(out_dir / rel), image[..., ::-1])
            points = template @ matrix[:, :2].T + matrix[:, 2]
            labels.append([rel, name, kind, level, 100 * (1 - level)])
            marks.append([rel, *points.reshape(-1).round(3)])
    with open(out_dir / "degradations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "identity", "type", "level", "quality"])
        writer.writerows(labels)
    with open(out_dir / "landmarks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image"] + [f"{c}{j}" for j in range(1, 6) for c in "xy"])
        writer.writerows(marks)
