"""Detection figures: PR curves, confusion matrix, label statistics and drawn predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from visionzoo.core.plots import image_grid, palette, plt, save_figure
from visionzoo.detection.records import DetectionRecord

MAX_TICK_LABELS = 30  # beyond this many classes the axes stay unlabelled


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """One RGB colour per class: ``palette`` without its black background entry."""
    return [tuple(int(v) for v in c) for c in palette(num_classes + 1)[1:]]


def plot_pr_curves(pr_data: dict[str, np.ndarray], class_names: Sequence[str], path: Path) -> Path:
    """Precision-recall curves at IoU 0.5, one per class plus their mean, AP50 in the legend.

    ``pr_data`` is ``DetectionEvaluator.pr_curves()``: ``recall`` [R], ``precision`` [C, R] (NaN
    rows for classes without ground truth) and ``ap50`` [C].
    """
    recall, precision, ap50 = pr_data["recall"], pr_data["precision"], pr_data["ap50"]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    legend = len(class_names) <= MAX_TICK_LABELS
    for name, curve, ap in zip(class_names, precision, ap50, strict=True):
        if not np.isnan(curve).all():
            ax.plot(recall, curve, linewidth=1, label=f"{name} {ap:.3f}" if legend else None)
    valid = ~np.isnan(precision).all(1)
    if valid.any():
        mean = precision[valid].mean(0)
        ax.plot(recall, mean, color="black", linewidth=3, label=f"all {ap50[valid].mean():.3f}")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Precision-recall at IoU 0.5 (legend: AP50)")
    if valid.any():
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def normalize_confusion_matrix(matrix: np.ndarray) -> np.ndarray:
    """Divide each column (true class) by its total; empty columns stay 0."""
    totals = matrix.sum(0, keepdims=True).astype(np.float64)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, normalize: bool = True
) -> Path:
    """Heat map of a ``[C+1, C+1]`` detection confusion matrix (rows predicted, columns true,
    last index background), as ``DetectionEvaluator.confusion_matrix()`` returns it."""
    shown = normalize_confusion_matrix(matrix) if normalize else matrix.astype(np.float64)
    n = len(class_names) + 1
    size = min(4 + 0.4 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(np.where(shown > 0, shown, np.nan), cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046)
    if n <= MAX_TICK_LABELS:
        names = [*class_names, "background"]
        ax.set_xticks(range(n), names, rotation=90)
        ax.set_yticks(range(n), names)
        for (i, j), v in np.ndenumerate(shown):
            if v > 0:
                text = f"{v:.2f}" if normalize else str(int(v))
                colour = "white" if v > 0.5 * np.nanmax(shown) else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set(xlabel="True", ylabel="Predicted")
    ax.set_title("Confusion matrix" + (" (columns sum to 1)" if normalize else ""))
    fig.tight_layout()
    return save_figure(fig, path)


def plot_label_distribution(
    records: Sequence[DetectionRecord], class_names: Sequence[str], path: Path
) -> Path:
    """Instances per class (crowd / difficult boxes left out) and a 2-D histogram of box width
    against height, both as fractions of the image size."""
    counts = np.zeros(len(class_names), dtype=np.int64)
    sizes = [np.zeros((0, 2))]
    for r in records:
        keep = ~r.ignored
        counts += np.bincount(r.labels[keep], minlength=len(class_names))
        wh = r.boxes[keep, 2:] - r.boxes[keep, :2]
        sizes.append(wh / np.array([r.width, r.height], dtype=np.float64))
    wh = np.concatenate(sizes)
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(11, 4.5))
    bars.bar(range(len(counts)), counts, color=np.array(class_colours(len(counts))) / 255)
    if len(counts) <= MAX_TICK_LABELS:
        bars.set_xticks(range(len(counts)), class_names, rotation=90)
    bars.set(ylabel="instances", title=f"{int(counts.sum())} boxes in {len(records)} images")
    grid, _, _ = np.histogram2d(wh[:, 0], wh[:, 1], bins=50, range=[[0, 1], [0, 1]])
    shown = hist.imshow(
        np.where(grid.T > 0, grid.T, np.nan), origin="lower", extent=(0, 1, 0, 1), cmap="viridis"
    )
    fig.colorbar(shown, ax=hist, fraction=0.046, label="boxes")
    hist.set(xlabel="width / image width", ylabel="height / image height", title="Box sizes")
    fig.tight_layout()
    return save_figure(fig, path)


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor | None,
    class_names: Sequence[str],
) -> torch.Tensor:
    """Draw xyxy ``boxes`` [K, 4] on a uint8 ``image`` [3, H, W], each labelled with its class
    name (and score); returns a new uint8 [3, H, W] tensor."""
    if len(boxes) == 0:
        return image.clone()
    colours = class_colours(len(class_names))
    names = [class_names[int(k)] for k in labels]
    if scores is not None:
        names = [f"{n} {float(s):.2f}" for n, s in zip(names, scores, strict=True)]
    return draw_bounding_boxes(
        image,
        boxes.detach().float().cpu(),
        labels=names,
        colors=[colours[int(k)] for k in labels],
        width=2,
        label_colors="white",
        fill_labels=True,
    )


def save_prediction_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    preds: Sequence[dict[str, torch.Tensor]],
    class_names: Sequence[str],
    path: Path,
    max_images: int = 16,
    conf: float = 0.25,
) -> Path:
    """A square grid of up to ``max_images`` uint8 images [3, H, W] with their predictions
    (``boxes`` xyxy in those images' pixels, ``scores``, ``labels``) scoring above ``conf``."""
    drawn = []
    for image, pred in zip(images[:max_images], preds[:max_images], strict=False):
        keep = pred["scores"] > conf
        out = draw_detections(
            image, pred["boxes"][keep], pred["labels"][keep], pred["scores"][keep], class_names
        )
        drawn.append(out.permute(1, 2, 0).cpu().numpy())
    if not drawn:
        raise ValueError("save_prediction_grid needs at least one image")
    cols = int(np.ceil(np.sqrt(len(drawn))))
    blank = np.full_like(drawn[0], 255)
    drawn += [blank] * (-len(drawn) % cols)  # fill the last row
    rows = [drawn[i : i + cols] for i in range(0, len(drawn), cols)]
    image_grid(Path(path), rows, [""] * cols)
    return Path(path)
