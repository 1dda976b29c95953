"""Five-point face alignment to insightface's 112×112 ArcFace template.

A face's 5 landmarks (left eye, right eye, nose tip, left and right mouth corners; "left" is
the image's left) are mapped onto the template by the least-squares similarity transform
(Umeyama 1991, "Least-squares estimation of transformation parameters between two point
patterns", eqs. 34-43), and the image is warped with it, as insightface's ``norm_crop`` does.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from visionzoo.core.io import DataError

# insightface's ``arcface_dst`` (python-package/insightface/utils/face_align.py), in pixels of
# a 112×112 crop: left eye, right eye, nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template_for(size: int) -> np.ndarray:
    """The ``(5, 2)`` template for a ``size``×``size`` crop, by insightface's convention:
    multiples of 112 scale the 112 template; other sizes scale it as a 128 crop whose
    template is the 112 one shifted 8 px right."""
    if size <= 0:
        raise ValueError(f"alignment size must be positive, got {size}")
    if size % 112 == 0:
        return ARCFACE_TEMPLATE * (size / 112)
    ratio = size / 128
    return ARCFACE_TEMPLATE * ratio + np.array([8 * ratio, 0])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` matrix ``[sR | t]`` of the rotation + uniform scale + translation (no
    reflection) that maps ``src`` ``(N, 2)`` onto ``dst`` ``(N, 2)`` with least squared error
    (Umeyama's closed form; the same estimate as ``skimage.transform.SimilarityTransform``)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(
            f"expected two (N, 2) point sets with N >= 2, got {src.shape}, {dst.shape}"
        )
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    cov = b.T @ a / len(src)  # Umeyama eq. 38
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # eq. 39/43: flip the weakest axis, no mirror
        s[1, 1] = -1
    rotation = u @ s @ vt
    var_src = (a**2).sum() / len(src)  # eq. 36
    if var_src == 0:
        raise ValueError("source points all coincide; no similarity transform maps them")
    scale = (d * np.diag(s)).sum() / var_src  # eq. 42
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_dst - scale * rotation @ mu_src  # eq. 41
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp ``image`` ``(H, W, C)`` (or ``(H, W)``) uint8 so its ``landmarks`` ``(5, 2)`` (x, y
    pixels) land on the ArcFace template; returns ``(size, size, C)``, black outside the image
    (bilinear, as insightface's ``norm_crop``)."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got shape {landmarks.shape}")
    matrix = similarity_transform(landmarks, template_for(size))
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def _key(name: str) -> str:
    return PurePosixPath(name.strip().replace("\\", "/")).as_posix()


def read_landmarks_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``{image path as written (posix): (5, 2) landmarks}`` from a CSV with columns
    ``image,x1,y1,...,x5,y5`` (points in template order; a header row naming those columns,
    in any order, is optional)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"landmarks file {str(path)!r} does not exist; check the path")
    names = ["image"] + [f"{c}{i}" for i in range(1, 6) for c in "xy"]
    order = list(range(11))
    out: dict[str, np.ndarray] = {}
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row):
                continue
            header = [c.strip().lower() for c in row]
            if lineno == 1 and "image" in header:
                missing = [n for n in names if n not in header]
                if missing:
                    raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
                order = [header.index(n) for n in names]
                continue
            try:
                cells = [row[i] for i in order]
                points = np.array([float(c) for c in cells[1:]]).reshape(5, 2)
            except (IndexError, ValueError):
                raise DataError(
                    f"{path}:{lineno}: expected 'image,x1,y1,...,x5,y5' with 10 numbers, got "
                    f"{','.join(row)!r}"
                ) from None
            key = _key(cells[0])
            if key in out:
                raise DataError(f"{path}:{lineno}: image {key!r} is listed twice; keep one row")
            out[key] = points
    return out
