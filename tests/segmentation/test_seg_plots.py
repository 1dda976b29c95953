"""Segmentation sample grid: every class tinted (class 0 too), ignored pixels marked apart from
every class and named in the legend, one legend entry per class up to 100+ classes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from visionzoo.core.plots import plt
from visionzoo.segmentation.plots import (
    _figure_sample_grid,
    colour_mask,
    overlay_classes,
    resize_nearest,
    save_sample_grid,
)

IGNORE = 255
NAMES = ["sky", "building", "road"]


def _legend_texts(fig: plt.Figure) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _drawn(fig: plt.Figure, row: int, column: int) -> np.ndarray:
    """The RGB array shown in one grid cell (what matplotlib renders there)."""
    return np.asarray(fig.axes[3 * row + column].images[0].get_array())


def test_colour_mask_tiny() -> None:
    mask = np.array([[0, 1], [2, IGNORE]])
    out = colour_mask(mask, num_classes=3, ignore_index=IGNORE)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    # classes 0, 1, 2 take the published PASCAL VOC colours of ids 1, 2, 3 (id 0 is black)
    np.testing.assert_array_equal(out[0, 0], (128, 0, 0))
    np.testing.assert_array_equal(out[0, 1], (0, 128, 0))
    np.testing.assert_array_equal(out[1, 0], (128, 128, 0))
    np.testing.assert_array_equal(out[1, 1], (255, 255, 255))  # ignored: white


def test_colour_mask_rejects_unknown_ids() -> None:
    with pytest.raises(ValueError, match="class id 5"):
        colour_mask(np.array([[0, 5]]), num_classes=3, ignore_index=IGNORE)


@pytest.mark.parametrize("shape", [(5, 7, 13, 9), (48, 64, 96, 128), (10, 10, 3, 4)])
def test_resize_nearest_matches_opencv(shape: tuple[int, int, int, int]) -> None:
    h, w, height, width = shape
    mask = np.random.default_rng(0).integers(0, 300, (h, w)).astype(np.int32)
    expected = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(resize_nearest(mask, height, width), expected)


def test_overlay_blends_every_class_and_stripes_ignored() -> None:
    image = np.full((6, 6, 3), 100, dtype=np.uint8)
    mask = np.zeros((3, 3), dtype=np.int64)  # resized x2 to the image
    mask[:, 2] = IGNORE
    out = overlay_classes(image, mask, num_classes=3, ignore_index=IGNORE, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (6, 6, 3)
    # by hand: (100 + VOC colour 1 = (128, 0, 0)) / 2 for class 0, everywhere in columns 0-3
    np.testing.assert_array_equal(out[:, :4], np.broadcast_to((114, 50, 50), (6, 4, 3)))
    # ignored columns 4-5: white blended to (100 + 255) / 2 on stripes, the raw image between
    on_stripe = (np.add.outer(np.arange(6), np.arange(4, 6)) % 6) < 3
    np.testing.assert_array_equal(out[:, 4:][on_stripe], np.full((on_stripe.sum(), 3), 178))
    np.testing.assert_array_equal(
        out[:, 4:][~on_stripe], np.full((6 * 2 - on_stripe.sum(), 3), 100)
    )


def _sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.full((12, 16, 3), 100, dtype=np.uint8)
    truth = np.zeros((12, 16), dtype=np.int64)  # class 0 everywhere ...
    truth[:, 8:] = IGNORE  # ... but the right half is ignored
    truth[:4, :4] = 2
    pred = np.ones((6, 8), dtype=np.int64)  # half the image's size: resized on drawing
    return image, truth, pred


def test_sample_grid_tints_class_zero_and_marks_ignored() -> None:
    image, truth, pred = _sample()
    fig = _figure_sample_grid([image], [truth], [pred], NAMES, IGNORE)
    assert _legend_texts(fig) == [*NAMES, "ignored"]
    shown_image, shown_truth, shown_pred = (_drawn(fig, 0, j) for j in range(3))
    np.testing.assert_array_equal(shown_image, image)
    assert shown_truth.shape == shown_pred.shape == image.shape
    class0 = shown_truth[8, 4]
    assert (class0 != image[8, 4]).any()  # class 0 is tinted, not left as the raw image
    stripes = shown_truth[:, 8:][(shown_truth[:, 8:] != image[:, 8:]).any(-1)]
    assert len(stripes) > 0  # some ignored pixels are marked ...
    assert all((c != class0).any() for c in stripes)  # ... in a colour unlike class 0's
    assert (shown_truth[:4, :4] != class0).any(-1).all()  # class 2 differs from class 0
    assert (shown_pred == shown_pred[0, 0]).all()  # prediction: class 1 over a flat image
    plt.close(fig)


def test_sample_grid_legend_without_ignored_pixels() -> None:
    image, truth, pred = _sample()
    truth[truth == IGNORE] = 1
    fig = _figure_sample_grid([image, image], [truth, truth], [pred, pred], NAMES, IGNORE)
    assert _legend_texts(fig) == NAMES
    plt.close(fig)


def test_sample_grid_many_classes() -> None:
    names = [f"class {i}" for i in range(120)]
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    truth = np.arange(64).reshape(8, 8) + 50
    fig = _figure_sample_grid([image], [truth], [truth], names, IGNORE)
    assert _legend_texts(fig) == names
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    grid = fig.axes[0].get_window_extent()
    assert legend.height < fig.bbox.height - grid.height  # in columns below the grid, not a strip
    assert legend.y1 <= grid.y0 and legend.width <= fig.bbox.width
    plt.close(fig)


def test_save_sample_grid_writes_png(tmp_path: Path) -> None:
    image, truth, pred = _sample()
    out = save_sample_grid(tmp_path / "plots" / "val.png", [image], [truth], [pred], NAMES, 255)
    assert out == tmp_path / "plots" / "val.png"
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 100 and png.height > 100


def test_save_sample_grid_rejects_mismatched_lists(tmp_path: Path) -> None:
    image, truth, pred = _sample()
    with pytest.raises(ValueError, match="as many images"):
        save_sample_grid(tmp_path / "x.png", [image, image], [truth], [pred], NAMES, IGNORE)
