"""Hand-crafted face-image quality measures, named after the ISO/IEC 29794-5 (OFIQ) components,
each a raw value and a 0–100 component score through configurable sigmoids.

Image measures work on batches ``(B, 3, H, W)`` in [0, 1] through the luminance
``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), as OFIQ does:

- ``sharpness_laplacian``: variance of the 4-neighbour Laplacian (Pech-Pacheco et al. 2000;
  ``cv2.Laplacian(ksize=1)``, reflect-101 borders); ``sharpness_gradient``: mean Sobel gradient
  magnitude (Tenengrad, Krotkov 1987; ``cv2.Sobel(ksize=3)``), both on Y in 0–255 units;
- ``luminance_mean`` / ``luminance_variance`` of Y in [0, 1] (OFIQ 7.3.2);
- ``under_exposure`` / ``over_exposure``: fraction of pixels with Y·255 < 25 or > 247 (OFIQ's
  exposure prevention bands);
- ``dynamic_range``: entropy (bits) of the 256-bin histogram of Y (OFIQ 7.3.4);
- ``contrast``: Michelson contrast of the 5th and 95th percentiles of Y;
- ``illumination_uniformity``: intersection of the normalised 32-bin Y histograms of the left
  and right halves (OFIQ 7.3.3 compares the two face halves likewise; 1 = identical);
- ``face_symmetry``: mean |Y − mirrored Y| (0 = symmetric);
- ``noise``: Immerkær's (1996) fast noise standard deviation, Y in 0–255 units.

Landmark measures (``landmark_measures``) take 5 points per face (eyes, nose tip, mouth
corners, in the ArcFace template's order): ``inter_eye_distance`` and ``head_size`` (eye
midpoint to mouth midpoint, ×2) in pixels, and ``yaw`` / ``pitch`` / ``roll`` in degrees from
``cv2.solvePnP`` against a generic 3-D face (``head_pose``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGE_MEASURES = (
    "sharpness_laplacian",
    "sharpness_gradient",
    "luminance_mean",
    "luminance_variance",
    "under_exposure",
    "over_exposure",
    "dynamic_range",
    "contrast",
    "illumination_uniformity",
    "face_symmetry",
    "noise",
)
LANDMARK_MEASURES = ("inter_eye_distance", "head_size", "yaw", "pitch", "roll")
UNDER, OVER = 25.0, 247.0  # exposure bands on Y·255

# Component score = 100 × Π sigmoid(slope × (raw − centre)): one rising sigmoid for measures
# where more is better, one falling one (negative slope) for less-is-better, two for a range.
# Centres sit where a face at the network's input size (64–112 px) turns from good to poor.
DEFAULT_SIGMOIDS: dict[str, list[list[float]]] = {
    "sharpness_laplacian": [[60.0, 0.06]],
    "sharpness_gradient": [[12.0, 0.4]],
    "luminance_mean": [[0.25, 25.0], [0.75, -25.0]],
    "luminance_variance": [[0.01, 400.0]],
    "under_exposure": [[0.15, -30.0]],
    "over_exposure": [[0.1, -40.0]],
    "dynamic_range": [[5.0, 2.5]],
    "contrast": [[0.3, 12.0]],
    "illumination_uniformity": [[0.6, 12.0]],
    "face_symmetry": [[0.12, -40.0]],
    "noise": [[8.0, -0.5]],
    "inter_eye_distance": [[20.0, 0.3]],
    "head_size": [[40.0, 0.15]],
    "yaw": [[25.0, -0.25]],  # applied to |angle|
    "pitch": [[25.0, -0.25]],
    "roll": [[20.0, -0.3]],
}
ABSOLUTE = frozenset({"yaw", "pitch", "roll"})

# A generic 3-D face (mm; x right, y down, z away from the camera) at the 5 landmarks:
# image-left eye, image-right eye, nose tip, image-left and image-right mouth corners.
GENERIC_FACE_3D = np.array(
    [[-32.0, -35.0, 0.0], [32.0, -35.0, 0.0], [0.0, 0.0, -30.0], [-26.0, 32.0, 0.0],
     [26.0, 32.0, 0.0]]
)  # fmt: skip

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def luminance(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luminance (B, 1, H, W) of RGB images (B, 3, H, W) in [0, 1] (grey: (B, 1, ...))."""
    if images.shape[1] == 1:
        return images.float()
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True)


def _filter(y: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """3×3 correlation with reflect-101 borders (cv2's default), same size out."""
    padded = F.pad(y, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel.to(y).view(1, 1, 3, 3))


def _histograms(y: torch.Tensor, bins: int) -> torch.Tensor:
    """Normalised histograms (B, bins) of values in [0, 1] (B, N), bin i = [i/bins, (i+1)/bins)."""
    index = (y.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    counts = torch.zeros(y.shape[0], bins, device=y.device).scatter_add_(
        1, index, torch.ones_like(y)
    )
    return counts / y.shape[1]


def image_measures(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw values (B,) of every ``IMAGE_MEASURES`` entry for images (B, 3, H, W) in [0, 1]."""
    y = luminance(images)
    b, _, h, w = y.shape
    y255 = y * 255.0
    flat = y.flatten(1)
    lap = _filter(y255, _LAPLACIAN).flatten(1)
    gx, gy = _filter(y255, _SOBEL_X), _filter(y255, _SOBEL_X.T)
    hist = _histograms(torch.round(flat * 255) / 256 + 1 / 512, 256)
    entropy = -(hist * torch.log2(hist.clamp_min(1e-12))).sum(1)
    p5, p95 = torch.quantile(flat, torch.tensor([0.05, 0.95], device=y.device), dim=1)
    half = w // 2
    left = _histograms(y[..., :half].flatten(1), 32)
    right = _histograms(y[..., w - half :].flatten(1), 32)
    noise_response = F.conv2d(y255, _IMMERKAER.to(y).view(1, 1, 3, 3)).abs().flatten(1)
    return {
        "sharpness_laplacian": lap.var(1, unbiased=False),
        "sharpness_gradient": torch.sqrt(gx**2 + gy**2).flatten(1).mean(1),
        "luminance_mean": flat.mean(1),
        "luminance_variance": flat.var(1, unbiased=False),
        "under_exposure": (flat * 255 < UNDER).float().mean(1),
        "over_exposure": (flat * 255 > OVER).float().mean(1),
        "dynamic_range": entropy,
        "contrast": (p95 - p5) / (p95 + p5).clamp_min(1e-6),
        "illumination_uniformity": torch.minimum(left, right).sum(1),
        "face_symmetry": (y - torch.flip(y, dims=[3])).abs().flatten(1).mean(1),
        # Immerkær 1996, eq. 2: σ = sqrt(π/2) / (6 (W−2)(H−2)) Σ |I * N|
        "noise": math.sqrt(math.pi / 2) * noise_response.sum(1) / (6 * (w - 2) * (h - 2)),
    }


def head_pose(points: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face from its 5 landmarks (5, 2) in pixels of a
    ``width`` × ``height`` image: ``cv2.solvePnP`` (EPnP, then Levenberg–Marquardt refinement)
    of ``GENERIC_FACE_3D`` with a pinhole camera of focal length ``width`` at the image centre,
    and ``cv2.RQDecomp3x3`` of the rotation (R = Rz(roll)·Ry(yaw)·Rx(pitch))."""
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)
    image_points = np.ascontiguousarray(points, np.float64).reshape(5, 1, 2)
    ok, rvec, tvec = cv2.solvePnP(
        GENERIC_FACE_3D, image_points, camera, None, flags=cv2.SOLVEPNP_EPNP
    )
    if ok:
        ok, rvec, tvec = cv2.solvePnP(
            GENERIC_FACE_3D, image_points, camera, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE
        )
    if not ok:
        return float("nan"), float("nan"), float("nan")
    pitch, yaw, roll = cv2.RQDecomp3x3(cv2.Rodrigues(rvec)[0])[0]
    if abs(pitch) > 90:  # the same rotation read with the face turned away: fold it back
        pitch = pitch - math.copysign(180.0, pitch)
    return float(yaw), float(pitch), float(roll)


def landmark_measures(landmarks: torch.Tensor, width: int, height: int) -> dict[str, torch.Tensor]:
    """Raw ``LANDMARK_MEASURES`` (B,) from landmarks (B, 5, 2) in pixels; NaN rows (no
    landmarks for that face) give NaN."""
    marks = landmarks.detach().double().cpu()
    eyes = marks[:, 1] - marks[:, 0]
    mouth_mid = (marks[:, 3] + marks[:, 4]) / 2
    eye_mid = (marks[:, 0] + marks[:, 1]) / 2
    poses = [
        head_pose(m.numpy(), width, height) if torch.isfinite(m).all() else (math.nan,) * 3
        for m in marks
    ]
    angles = torch.tensor(poses, dtype=torch.float64).reshape(-1, 3)
    out = {
        "inter_eye_distance": eyes.norm(dim=1),
        "head_size": 2 * (mouth_mid - eye_mid).norm(dim=1),
        "yaw": angles[:, 0],
        "pitch": angles[:, 1],
        "roll": angles[:, 2],
    }
    return {k: v.float().to(landmarks.device) for k, v in out.items()}


def component_scores(
    raw: Mapping[str, torch.Tensor], sigmoids: Mapping[str, Sequence[Sequence[float]]]
) -> dict[str, torch.Tensor]:
    """0–100 component scores: ``100 × Π_k sigmoid(slope_k × (raw − centre_k))`` per measure
    with ``[centre, slope]`` pairs from ``sigmoids`` (angles use |raw|)."""
    out = {}
    for name, value in raw.items():
        spec = sigmoids.get(name)
        if not spec:
            continue
        x = value.abs() if name in ABSOLUTE else value
        score = torch.ones_like(x)
        for centre, slope in spec:
            score = score * torch.sigmoid(slope * (x - centre))
        out[name] = 100.0 * score
    return out


def combined_score(
    scores: Mapping[str, torch.Tensor], weights: Mapping[str, float], combine: str = "geometric"
) -> torch.Tensor:
    """Weighted mean (B,) of the component scores named in ``weights``: ``arithmetic``, or
    ``geometric`` (``exp Σ w log s / Σ w``, so one poor component pulls the whole score down);
    a component that is NaN for a face (no landmarks) is left out of that face's mean."""
    if combine not in ("arithmetic", "geometric"):
        raise ValueError(f"model.combine={combine!r}; choose arithmetic or geometric")
    names = [n for n, w in weights.items() if w and n in scores]
    if not names:
        raise ValueError(
            f"model.weights names none of the measured components ({', '.join(sorted(scores))})"
        )
    values = torch.stack([scores[n] for n in names], 1)
    w = values.new_tensor([float(weights[n]) for n in names]).expand_as(values)
    valid = torch.isfinite(values)
    w = torch.where(valid, w, torch.zeros_like(w))
    total = w.sum(1).clamp_min(1e-12)
    if combine == "geometric":
        logs = torch.log(torch.nan_to_num(values, nan=1.0).clamp_min(1e-3))
        return torch.exp((logs * w).sum(1) / total)
    return (torch.nan_to_num(values) * w).sum(1) / total
