"""Face alignment: the similarity estimate against scikit-image's ``SimilarityTransform``, the
template against insightface's published numbers, and a warp round trip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from visionzoo.core.io import DataError
from visionzoo.recognition.align import (
    ARCFACE_TEMPLATE,
    align_face,
    read_landmarks_csv,
    similarity_transform,
    template_for,
)

# insightface python-package/insightface/utils/face_align.py: arcface_dst
PUBLISHED = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
]


def test_template_is_insightface_arcface_dst() -> None:
    np.testing.assert_array_equal(ARCFACE_TEMPLATE, np.array(PUBLISHED))
    np.testing.assert_allclose(template_for(224), 2 * np.array(PUBLISHED))
    # insightface's estimate_norm for a 128 crop: ratio 1, x shifted by 8
    np.testing.assert_allclose(template_for(128), np.array(PUBLISHED) + [8, 0])


@pytest.mark.parametrize("seed", range(6))
def test_similarity_matches_skimage(seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 200, (5, 2))
    if seed % 2:  # a mirrored target: the best proper similarity, no reflection, must win
        dst = src * [-1, 1] + rng.normal(0, 3, (5, 2))
    else:
        dst = rng.uniform(0, 112, (5, 2))
    expected = SimilarityTransform.from_estimate(src, dst)
    assert expected
    got = similarity_transform(src, dst)
    np.testing.assert_allclose(got, expected.params[:2], rtol=1e-9, atol=1e-9)
    assert np.linalg.det(got[:, :2]) > 0


def test_align_round_trip_recovers_the_face() -> None:
    rng = np.random.default_rng(0)
    # A smooth "aligned face" image, then placed in a larger photo by a known similarity.
    aligned = cv2.resize(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8), (112, 112))
    angle, scale, t = np.deg2rad(25), 1.8, np.array([70.0, 40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    known = np.hstack([rot, t[:, None]])
    photo = cv2.warpAffine(aligned, known, (320, 320), flags=cv2.INTER_CUBIC)
    landmarks = ARCFACE_TEMPLATE @ rot.T + t
    inverse = np.linalg.inv(np.vstack([known, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(
        similarity_transform(landmarks, ARCFACE_TEMPLATE), inverse, atol=1e-9
    )
    out = align_face(photo, landmarks)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    inner = (slice(4, -4), slice(4, -4))  # borders touch interpolation of the black outside
    assert np.abs(out[inner].astype(float) - aligned[inner]).mean() < 2.0


def test_read_landmarks_csv(tmp_path: Path) -> None:
    cols = ["image"] + [f"{c}{i}" for i in range(1, 6) for c in "xy"]
    order = cols[::-1]  # any column order when there is a header
    row = dict(zip(cols, ["./a/1.jpg"] + [str(v) for v in range(10)], strict=True))
    (tmp_path / "h.csv").write_text(",".join(order) + "\n" + ",".join(row[c] for c in order))
    marks = read_landmarks_csv(tmp_path / "h.csv")
    np.testing.assert_array_equal(marks["a/1.jpg"], np.arange(10.0).reshape(5, 2))
    (tmp_path / "n.csv").write_text("b.jpg," + ",".join("1" * 10) + "\nc.jpg,1,2\n")
    with pytest.raises(DataError, match=r"n\.csv:2: expected 'image,x1,y1"):
        read_landmarks_csv(tmp_path / "n.csv")
    (tmp_path / "d.csv").write_text(("b.jpg," + ",".join("1" * 10) + "\n") * 2)
    with pytest.raises(DataError, match=r"d\.csv:2: image 'b\.jpg' is listed twice"):
        read_landmarks_csv(tmp_path / "d.csv")
