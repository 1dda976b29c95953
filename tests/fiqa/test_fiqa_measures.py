"""Hand-crafted measures against cv2 / numpy / scipy computations of the same definitions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy import signal, special, stats

from visionzoo.fiqa.measures import (
    GENERIC_FACE_3D,
    combined_score,
    component_scores,
    head_pose,
    image_measures,
    landmark_measures,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (2, 24, 32, 3)).astype(np.uint8)
    base[1] = cv2.GaussianBlur(base[1], (0, 0), 1.5)  # a second, smoother image
    return base


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2GRAY).astype(np.float64)


def test_image_measures_match_cv2_and_numpy(images: np.ndarray) -> None:
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    got = {k: v.numpy() for k, v in image_measures(batch).items()}
    for b, image in enumerate(images):
        y = _grey(image)
        y255 = y * 255
        lap = cv2.Laplacian(y255, cv2.CV_64F, ksize=1)
        gx, gy = (
            cv2.Sobel(y255, cv2.CV_64F, 1, 0, ksize=3),
            cv2.Sobel(y255, cv2.CV_64F, 0, 1, ksize=3),
        )
        counts = np.bincount(np.round(y255).astype(int).ravel(), minlength=256)
        p5, p95 = np.percentile(y, [5, 95])
        left = np.histogram(y[:, :16], 32, (0, 1))[0] / y[:, :16].size
        right = np.histogram(y[:, 16:], 32, (0, 1))[0] / y[:, 16:].size
        response = signal.convolve2d(y255, [[1, -2, 1], [-2, 4, -2], [1, -2, 1]], mode="valid")
        expected = {
            "sharpness_laplacian": lap.var(),
            "sharpness_gradient": np.sqrt(gx**2 + gy**2).mean(),
            "luminance_mean": y.mean(),
            "luminance_variance": y.var(),
            "under_exposure": np.mean(y255 < 25),
            "over_exposure": np.mean(y255 > 247),
            "dynamic_range": stats.entropy(counts, base=2),
            "contrast": (p95 - p5) / (p95 + p5),
            "illumination_uniformity": np.minimum(left, right).sum(),
            "face_symmetry": np.abs(y - np.fliplr(y)).mean(),
            "noise": np.sqrt(np.pi / 2) * np.abs(response).sum() / (6 * 30 * 22),
        }
        for name, value in expected.items():
            assert got[name][b] == pytest.approx(value, rel=1e-3, abs=1e-4), name


def test_exposure_bands_on_flat_images() -> None:
    dark = torch.full((1, 3, 8, 8), 10 / 255)
    bright = torch.full((1, 3, 8, 8), 250 / 255)
    assert image_measures(dark)["under_exposure"].item() == 1.0
    assert image_measures(bright)["over_exposure"].item() == 1.0
    assert image_measures(dark)["dynamic_range"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (20.0, -10.0, 5.0), (-30.0, 15.0, -12.0)])
def test_head_pose_recovers_a_projected_generic_face(angles: tuple[float, float, float]) -> None:
    yaw, pitch, roll = angles
    rx, ry, rz = (np.deg2rad(a) for a in (pitch, yaw, roll))
    r_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    r_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    r_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    camera = np.array([[112.0, 0, 56], [0, 112, 56], [0, 0, 1]])
    rvec = cv2.Rodrigues(r_z @ r_y @ r_x)[0]
    points = cv2.projectPoints(GENERIC_FACE_3D, rvec, np.array([0, 0, 400.0]), camera, None)[0]
    got = head_pose(points.reshape(5, 2), 112, 112)
    np.testing.assert_allclose(got, angles, atol=0.5)


def test_landmark_distances() -> None:
    marks = torch.tensor([[[10.0, 20], [40, 20], [25, 30], [15, 45], [35, 45]]])
    out = landmark_measures(torch.cat([marks, torch.full_like(marks, float("nan"))]), 64, 64)
    assert out["inter_eye_distance"][0].item() == pytest.approx(30.0)
    assert out["head_size"][0].item() == pytest.approx(50.0)  # 2 × |(25, 20) − (25, 45)|
    assert torch.isnan(out["yaw"][1])


def test_component_and_combined_scores() -> None:
    raw = {"noise": torch.tensor([2.0, 20.0]), "yaw": torch.tensor([-40.0, 10.0])}
    sig = {"noise": [[8.0, -0.5]], "yaw": [[25.0, -0.25], [0.0, 1.0]]}
    got = component_scores(raw, sig)
    expected_noise = 100 * special.expit(-0.5 * (np.array([2.0, 20.0]) - 8))
    yaw = np.abs([-40.0, 10.0])
    expected_yaw = 100 * special.expit(-0.25 * (yaw - 25)) * special.expit(yaw)
    np.testing.assert_allclose(got["noise"].numpy(), expected_noise, rtol=1e-5)
    np.testing.assert_allclose(got["yaw"].numpy(), expected_yaw, rtol=1e-5)
    scores = {"a": torch.tensor([80.0, 10.0]), "b": torch.tensor([20.0, float("nan")])}
    weights = {"a": 1.0, "b": 3.0}
    arithmetic = combined_score(scores, weights, "arithmetic")
    geometric = combined_score(scores, weights, "geometric")
    assert arithmetic.tolist() == pytest.approx([(80 + 60) / 4, 10.0])
    assert geometric[0].item() == pytest.approx(stats.gmean([80, 20], weights=[1, 3]), rel=1e-5)
    assert geometric[1].item() == pytest.approx(10.0)  # NaN component left out
