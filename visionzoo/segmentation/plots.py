"""Segmentation figures: validation samples (image | truth | prediction) with a class legend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from visionzoo.core.plots import class_colours, legend_column_inches, plt, save_figure

IGNORE_COLOUR = (255, 255, 255)  # never a class colour: the VOC palette reaches white at 2**24 - 1
HATCH_PERIOD = 6  # pixels between the diagonal stripes that mark ignored pixels


def colour_mask(mask: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Colour a class-id mask (H, W) into RGB uint8 (H, W, 3): class ``k`` gets
    ``class_colours(num_classes)[k]`` (class 0 included, none black), ``ignore_index`` pixels
    get ``IGNORE_COLOUR``."""
    mask = np.asarray(mask)
    ignored = mask == ignore_index
    bad = ~ignored & ((mask < 0) | (mask >= num_classes))
    if bad.any():
        raise ValueError(
            f"mask holds class id {int(mask[bad][0])}, outside 0..{num_classes - 1} and not "
            f"ignore_index {ignore_index}; check num_classes / ignore_index for this dataset"
        )
    out = class_colours(num_classes)[np.where(ignored, 0, mask)]
    out[ignored] = IGNORE_COLOUR
    return out


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask to (height, width); source pixel ``floor(y * h /
    height)`` as OpenCV's ``INTER_NEAREST`` picks it, so class ids are never mixed."""
    h, w = mask.shape
    if (h, w) == (height, width):
        return mask
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return mask[rows[:, None], cols[None, :]]


def overlay_classes(
    image: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int, alpha: float = 0.5
) -> np.ndarray:
    """Blend ``colour_mask`` over an RGB uint8 image (H, W, 3); every class is tinted (class 0
    too), ignored pixels show the raw image crossed by ``IGNORE_COLOUR`` stripes. A mask of
    another size is resized to the image with ``resize_nearest``. Returns uint8 (H, W, 3)."""
    mask = resize_nearest(np.asarray(mask), *image.shape[:2])
    colours = colour_mask(mask, num_classes, ignore_index).astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colours
    yy, xx = np.indices(mask.shape)
    stripe = (yy + xx) % HATCH_PERIOD < HATCH_PERIOD // 2
    ignored = mask == ignore_index
    out[ignored & ~stripe] = image[ignored & ~stripe]
    return np.rint(out).astype(np.uint8)


def _check_inputs(
    images: Sequence[np.ndarray], truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]
) -> None:
    if not images or not len(images) == len(truths) == len(preds):
        raise ValueError(
            f"save_sample_grid needs as many images, truths and predictions (got {len(images)}, "
            f"{len(truths)}, {len(preds)}), at least one"
        )
    for i, (image, truth, pred) in enumerate(zip(images, truths, preds, strict=True)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"sample {i}: image must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}"
            )
        if np.ndim(truth) != 2 or np.ndim(pred) != 2:
            raise ValueError(
                f"sample {i}: truth and prediction must be class-id masks (H, W), got "
                f"{np.shape(truth)} and {np.shape(pred)}"
            )


def _legend_handles(
    class_names: Sequence[str], with_ignored: bool
) -> tuple[list[Patch], list[str]]:
    colours = class_colours(len(class_names)) / 255
    handles = [Patch(facecolor=c, edgecolor="0.3") for c in colours]
    labels = list(class_names)
    if with_ignored:
        ignored = np.array(IGNORE_COLOUR) / 255
        handles.append(Patch(facecolor=ignored, edgecolor="0.3", hatch="////"))
        labels.append("ignored")
    return handles, labels


def _figure_sample_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    class_names: Sequence[str],
    ignore_index: int,
) -> plt.Figure:
    """The figure ``save_sample_grid`` writes: rows of image | truth | prediction over a legend
    in as many columns as fit the figure's width (font shrinking from 9 to 6 points with the
    class count), so 100+ classes still get one entry each."""
    _check_inputs(images, truths, preds)
    num_classes = len(class_names)
    with_ignored = any(bool((np.asarray(t) == ignore_index).any()) for t in truths)
    handles, labels = _legend_handles(class_names, with_ignored)
    fontsize = float(np.clip(9 - (len(labels) - 20) / 20, 6, 9))
    width = 3 * 2.4
    ncol = int(np.clip((width - 0.3) // legend_column_inches(labels, fontsize), 1, len(labels)))
    legend_in = np.ceil(len(labels) / ncol) * fontsize * 1.5 / 72 + 0.35
    aspect = float(np.clip(images[0].shape[0] / images[0].shape[1], 0.5, 2.0))
    rows_in = (2.4 * aspect + 0.15) * len(images) + 0.3  # cells follow the images' shape
    fig, axes = plt.subplots(len(images), 3, figsize=(width, rows_in + legend_in), squeeze=False)
    for row, image, truth, pred in zip(axes, images, truths, preds, strict=True):
        drawn = (
            image,
            overlay_classes(image, truth, num_classes, ignore_index),
            overlay_classes(image, pred, num_classes, ignore_index),
        )
        for ax, shown in zip(row, drawn, strict=True):
            ax.imshow(shown, interpolation="nearest")
            ax.axis("off")
    for ax, title in zip(axes[0], ("image", "truth", "prediction"), strict=True):
        ax.set_title(title)
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=ncol,
        fontsize=fontsize,
        frameon=False,
        handlelength=1.2,
        columnspacing=0.8,
    )
    fig.tight_layout(rect=(0, legend_in / (rows_in + legend_in), 1, 1))
    return fig


def save_sample_grid(
    path: Path,
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    class_names: Sequence[str],
    ignore_index: int,
) -> Path:
    """Save validation samples as one PNG: a row per sample, columns image | truth |
    prediction, every class tinted with ``class_colours`` (class 0 included), ``ignore_index``
    pixels of the truth striped white and named "ignored", and a legend naming every class.

    ``images`` are uint8 RGB (H, W, 3); ``truths`` / ``preds`` are int class-id masks (h, w),
    resized to their image with nearest neighbour when their size differs.
    """
    fig = _figure_sample_grid(images, truths, preds, class_names, ignore_index)
    return save_figure(fig, path, dpi=90)
