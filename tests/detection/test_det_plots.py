"""Detection figures: every plot writes a readable PNG, names every class up to 100+ classes
(ticks, legend) and writes cell values that fit; drawn boxes change only their pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo.core.plots import plt
from visionzoo.detection.plots import (
    _figure_confusion_matrix,
    _figure_label_distribution,
    _figure_pr_curves,
    draw_detections,
    normalize_confusion_matrix,
    plot_confusion_matrix,
    plot_label_distribution,
    plot_pr_curves,
    save_prediction_grid,
)
from visionzoo.detection.records import DetectionRecord

NAMES = ["cat", "dog", "eel"]
# the 80 COCO category names: the case (an 80-class dataset) that made the old figures unreadable
COCO = [
    name.replace("_", " ")
    for name in (
        "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
        "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
        "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite "
        "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup "
        "fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut "
        "cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
        "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
        "hair_drier toothbrush"
    ).split()
]


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


def _tick_texts(labels: list) -> list[str]:
    return [t.get_text() for t in labels]


@pytest.mark.parametrize("num_classes", [80, 120])
def test_confusion_matrix_names_every_class(num_classes: int) -> None:
    names = (COCO + [f"extra {i}" for i in range(40)])[:num_classes]
    assert len(COCO) == 80
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 3, (num_classes + 1, num_classes + 1))
    np.fill_diagonal(matrix, 997)  # columns of ~1000: fractions like 0.002 need 5 characters
    fig = _figure_confusion_matrix(matrix, names)
    ax = fig.axes[0]
    assert _tick_texts(ax.get_xticklabels()) == [*names, "background"]
    assert _tick_texts(ax.get_yticklabels()) == [*names, "background"]
    assert ax.get_xticklabels()[0].get_fontsize() >= 6  # still legible
    # the cells are too small for their values at a legible font: none written, all coloured
    assert len(ax.texts) == 0
    expected = matrix / matrix.sum(0, keepdims=True)
    drawn = np.ma.filled(ax.images[0].get_array(), 0.0)
    np.testing.assert_allclose(drawn, np.where(expected > 0, expected, 0.0))
    plt.close(fig)


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_cell_values(normalize: bool) -> None:
    # columns are true classes: cat seen 8 times, dog 1000 times (1 mistaken for cat), eel never
    matrix = np.array([[5, 1, 0, 2], [0, 999, 0, 1], [1, 0, 0, 0], [2, 0, 0, 0]])
    fig = _figure_confusion_matrix(matrix, NAMES, normalize=normalize)
    ax = fig.axes[0]
    written = {
        (round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts
    }
    if normalize:  # (column, row): fractions by hand, two significant digits, never "0.00"
        expected = {
            (0, 0): "0.62",
            (0, 2): "0.12",
            (0, 3): "0.25",
            (1, 0): "0.001",
            (1, 1): "1",
            (3, 0): "0.67",
            (3, 1): "0.33",
        }
    else:
        expected = {
            (0, 0): "5",
            (0, 2): "1",
            (0, 3): "2",
            (1, 0): "1",
            (1, 1): "999",
            (3, 0): "2",
            (3, 1): "1",
        }
    assert written == expected
    assert len(ax.texts) == len(expected)
    plt.close(fig)


def test_label_distribution_names_every_class() -> None:
    labels = [0, 5, 5, 79, 41, 79, 79]
    record = DetectionRecord(
        1,
        Path("a.jpg"),
        100,
        100,
        boxes=[[0, 0, 10, 10]] * len(labels),
        labels=labels,
        iscrowd=[0, 0, 0, 0, 0, 0, 1],  # the last 79 is a crowd box: not counted
    )
    fig = _figure_label_distribution([record], COCO)
    bars = fig.axes[0]
    assert _tick_texts(bars.get_xticklabels()) == COCO
    heights = [p.get_height() for p in bars.patches]
    expected = [0] * 80
    expected[0], expected[5], expected[41], expected[79] = 1, 2, 1, 2
    assert heights == expected
    plt.close(fig)


def test_pr_legend_names_every_class() -> None:
    recall = np.linspace(0, 1, 101)
    rng = np.random.default_rng(1)
    precision = np.clip(1 - recall[None] ** rng.uniform(0.5, 3, (80, 1)), 0, 1)
    boat = COCO.index("boat")
    precision[boat] = np.nan  # "boat" has no ground truth in this split
    ap50 = precision.mean(1)  # NaN for boat, as DetectionEvaluator.pr_curves() reports it
    fig = _figure_pr_curves({"recall": recall, "precision": precision, "ap50": ap50}, COCO)
    texts = _tick_texts(fig.axes[0].get_legend().get_texts())
    assert len(texts) == 80 + 1
    for name, text, ap in zip(COCO, texts, ap50, strict=False):
        assert text == (f"{name} (no labels)" if name == "boat" else f"{name} {ap:.3f}")
    assert texts[-1] == f"all {np.delete(ap50, boat).mean():.3f}"
    plt.close(fig)
