"""Detection figures: every plot writes a readable PNG; drawn boxes change only their pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo.detection.plots import (
    draw_detections,
    normalize_confusion_matrix,
    plot_confusion_matrix,
    plot_label_distribution,
    plot_pr_curves,
    save_prediction_grid,
)
from visionzoo.detection.records import DetectionRecord

NAMES = ["cat", "dog", "eel"]


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        assert image.width > 50 and image.height > 50
        return image.size


def test_plot_pr_curves(tmp_path: Path) -> None:
    recall = np.linspace(0, 1, 101)
    precision = np.stack([1 - recall**2, np.clip(1.2 - recall, 0, 1), np.full(101, np.nan)])
    pr = {"recall": recall, "precision": precision, "ap50": np.array([0.67, 0.7, np.nan])}
    out = plot_pr_curves(pr, NAMES, tmp_path / "pr" / "curve.png")
    assert out == tmp_path / "pr" / "curve.png"
    _assert_png(out)


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix(tmp_path: Path, normalize: bool) -> None:
    matrix = np.array([[5, 1, 0, 2], [0, 3, 0, 1], [1, 0, 0, 0], [2, 0, 0, 0]])
    _assert_png(plot_confusion_matrix(matrix, NAMES, tmp_path / "cm.png", normalize=normalize))


def test_normalized_confusion_columns_sum_to_one() -> None:
    matrix = np.array([[5, 1, 0, 2], [0, 3, 0, 1], [1, 0, 0, 0], [2, 0, 0, 0]])
    norm = normalize_confusion_matrix(matrix)
    np.testing.assert_allclose(norm.sum(0), [1, 1, 0, 1])  # class 2 never occurs: column 0
    np.testing.assert_allclose(norm[:, 0], [5 / 8, 0, 1 / 8, 2 / 8])


def test_plot_label_distribution(tmp_path: Path) -> None:
    records = [
        DetectionRecord(
            1, Path("a.jpg"), 200, 100, boxes=[[0, 0, 50, 50], [10, 10, 200, 100]], labels=[0, 2]
        ),
        DetectionRecord(2, Path("b.jpg"), 64, 64),
        DetectionRecord(
            3,
            Path("c.jpg"),
            64,
            64,
            boxes=[[0, 0, 8, 8], [0, 0, 64, 64]],
            labels=[1, 1],
            iscrowd=[0, 1],
        ),
    ]
    _assert_png(plot_label_distribution(records, NAMES, tmp_path / "labels.png"))


def test_draw_detections_changes_only_the_box() -> None:
    image = torch.full((3, 120, 160), 127, dtype=torch.uint8)
    boxes = torch.tensor([[20.0, 30.0, 80.0, 90.0]])
    out = draw_detections(image, boxes, torch.tensor([1]), torch.tensor([0.9]), NAMES)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    changed = (out != image).any(0)
    assert changed[60, 20] and changed[60, 80] and changed[30, 50] and changed[90, 50]  # border
    assert not changed[60, 50]  # box centre: below the label, inside the outline
    far = torch.ones_like(changed)
    far[25:95, 15:85] = False  # the box plus a margin of 5 px
    assert not changed[far].any()
    unchanged = draw_detections(image, torch.zeros(0, 4), torch.zeros(0), None, NAMES)
    assert torch.equal(unchanged, image)


def test_save_prediction_grid(tmp_path: Path) -> None:
    images = torch.randint(0, 255, (5, 3, 64, 80), dtype=torch.uint8)
    preds = [
        {
            "boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0], [10.0, 10.0, 20.0, 20.0]]),
            "scores": torch.tensor([0.8, 0.1]),
            "labels": torch.tensor([i % 3, 0]),
        }
        for i in range(5)
    ]
    path = save_prediction_grid(images, preds, NAMES, tmp_path / "grid.png", max_images=4)
    width, height = _assert_png(path)
    assert abs(width - height) < 0.2 * width  # 4 images in a 2 x 2 grid
