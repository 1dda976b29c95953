"""Detection figures: PR curves, confusion matrix, label statistics and drawn predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes

from visionzoo.core.plots import class_colours as core_class_colours
from visionzoo.core.plots import image_grid, legend_column_inches, plt, save_figure
from visionzoo.detection.records import DetectionRecord

MIN_FONT = 4.0  # points; below this tick labels thin out to every k-th class
MIN_VALUE_FONT = 5.5  # points; confusion-matrix cell values smaller than this are left out


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """One RGB colour per class (``core.plots.class_colours``, no black) as int tuples."""
    return [tuple(int(v) for v in c) for c in core_class_colours(num_classes)]


def _legend_fontsize(entries: int) -> float:
    """Legend font in points: 8 up to 30 entries, shrinking to 6 by about 90."""
    return float(np.clip(8 - (entries - 30) / 30, 6, 8))


def _figure_pr_curves(pr_data: dict[str, np.ndarray], class_names: Sequence[str]) -> plt.Figure:
    """The figure ``plot_pr_curves`` saves: one named legend entry per class (AP50, or "no
    labels" for classes without ground truth) plus the mean curve "all", in as many legend
    columns beside the axes as keep each column under 35 rows."""
    recall, precision, ap50 = pr_data["recall"], pr_data["precision"], pr_data["ap50"]
    valid = ~np.isnan(precision).all(1)
    labels = [
        f"{name} {ap:.3f}" if ok else f"{name} (no labels)"
        for name, ap, ok in zip(class_names, ap50, valid, strict=True)
    ]
    if valid.any():
        labels.append(f"all {ap50[valid].mean():.3f}")
    fontsize = _legend_fontsize(len(labels))
    ncol = int(np.ceil(len(labels) / 35)) or 1
    rows = int(np.ceil(len(labels) / ncol))
    column_in = legend_column_inches(labels, fontsize)
    height = max(5.5, rows * fontsize * 1.45 / 72 + 1.2)
    fig, ax = plt.subplots(figsize=(6.5 + ncol * column_in, height))
    colours = np.asarray(class_colours(len(class_names))).reshape(-1, 3) / 255
    for label, curve, ok, colour in zip(
        labels[: len(class_names)], precision, valid, colours, strict=True
    ):
        # classes without ground truth still get a (curveless) entry so every name is listed
        ax.plot(recall if ok else [], curve if ok else [], color=colour, linewidth=1, label=label)
    if valid.any():
        ax.plot(recall, precision[valid].mean(0), color="black", linewidth=3, label=labels[-1])
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Precision-recall at IoU 0.5 (legend: AP50)")
    if labels:
        ax.legend(
            bbox_to_anchor=(1.02, 1),
            loc="upper left",
            borderaxespad=0,
            ncol=ncol,
            fontsize=fontsize,
            handlelength=1.5,
            columnspacing=1.0,
        )
    fig.tight_layout()
    return fig


def plot_pr_curves(pr_data: dict[str, np.ndarray], class_names: Sequence[str], path: Path) -> Path:
    """Precision-recall curves at IoU 0.5, one per class plus their mean, AP50 in the legend.

    ``pr_data`` is ``DetectionEvaluator.pr_curves()``: ``recall`` [R], ``precision`` [C, R] (NaN
    rows for classes without ground truth) and ``ap50`` [C].
    """
    return save_figure(_figure_pr_curves(pr_data, class_names), path)


def normalize_confusion_matrix(matrix: np.ndarray) -> np.ndarray:
    """Divide each column (true class) by its total; empty columns stay 0."""
    totals = matrix.sum(0, keepdims=True).astype(np.float64)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def _cell_text(value: float, normalize: bool) -> str:
    """A cell's label: two significant digits for fractions (0.0012, not 0.00), else a count."""
    return f"{value:.2g}" if normalize else str(int(value))


def _tick_step(cell_pt: float) -> tuple[float, int]:
    """Tick font (points) for cells ``cell_pt`` points apart, and the labelling step: every
    class while a legible font fits, else every k-th one."""
    fontsize = float(np.clip(0.7 * cell_pt, MIN_FONT, 10))
    return fontsize, int(np.ceil(MIN_FONT / (0.7 * cell_pt)))


def _figure_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], normalize: bool = True
) -> plt.Figure:
    """The figure ``plot_confusion_matrix`` saves. The axes grow with the class count (about a
    third of an inch per class, at most 20 inches), tick names use a font that fits one cell,
    and cell values are written when all of them fit their cells at ``MIN_VALUE_FONT`` or more;
    beyond that (about 60+ classes with long values) the cells are only coloured."""
    shown = normalize_confusion_matrix(matrix) if normalize else matrix.astype(np.float64)
    n = len(class_names) + 1
    if shown.shape != (n, n):
        raise ValueError(
            f"confusion matrix has shape {shown.shape} but {len(class_names)} class names need "
            f"({n}, {n}) (last row/column: background)"
        )
    side = float(np.clip(0.35 * n, 3.5, 20.0))
    cell_pt = side * 72 / n
    tick_font, step = _tick_step(cell_pt)
    names = [*class_names, "background"]
    margin = 0.6 * max(len(t) for t in names) * tick_font / 72 + 0.6  # rotated names + label
    fig, ax = plt.subplots(figsize=(side + margin + 1.4, side + margin + 0.5))
    image = ax.imshow(np.where(shown > 0, shown, np.nan), cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=tick_font)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=tick_font)
    cells = [(i, j, _cell_text(v, normalize)) for (i, j), v in np.ndenumerate(shown) if v > 0]
    longest = max((len(t) for _, _, t in cells), default=1)
    value_font = min(9.0, 0.75 * cell_pt, 0.9 * cell_pt / (0.6 * longest))
    if value_font >= MIN_VALUE_FONT:
        high = 0.5 * shown.max()
        for i, j, text in cells:
            colour = "white" if shown[i, j] > high else "black"
            # in_layout=False: cell labels never move the axes, so tight_layout stays cheap
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=value_font,
                color=colour,
                in_layout=False,
            )
    ax.set(xlabel="True", ylabel="Predicted")
    ax.set_title("Confusion matrix" + (" (columns sum to 1)" if normalize else ""))
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: Path, normalize: bool = True
) -> Path:
    """Heat map of a ``[C+1, C+1]`` detection confusion matrix (rows predicted, columns true,
    last index background), as ``DetectionEvaluator.confusion_matrix()`` returns it."""
    return save_figure(_figure_confusion_matrix(matrix, class_names, normalize), path)


def _figure_label_distribution(
    records: Sequence[DetectionRecord], class_names: Sequence[str]
) -> plt.Figure:
    """The figure ``plot_label_distribution`` saves: the bar chart widens with the class count
    (a fifth of an inch per bar, at most 20 inches) so every bar keeps its rotated name."""
    counts = np.zeros(len(class_names), dtype=np.int64)
    sizes = [np.zeros((0, 2))]
    for r in records:
        keep = ~r.ignored
        counts += np.bincount(r.labels[keep], minlength=len(class_names))
        wh = r.boxes[keep, 2:] - r.boxes[keep, :2]
        sizes.append(wh / np.array([r.width, r.height], dtype=np.float64))
    wh = np.concatenate(sizes)
    n = max(len(class_names), 1)
    bars_in = float(np.clip(0.2 * n, 4.5, 20.0))
    tick_font, step = _tick_step(bars_in * 72 / n)
    names_in = 0.6 * max((len(t) for t in class_names), default=1) * tick_font / 72
    fig, (bars, hist) = plt.subplots(
        1,
        2,
        figsize=(bars_in + 6.0, 4.0 + names_in),
        gridspec_kw={"width_ratios": [bars_in, 4.5]},
    )
    bars.bar(range(len(counts)), counts, color=np.array(class_colours(len(counts))) / 255)
    ticks = list(range(0, len(class_names), step))
    bars.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90, fontsize=tick_font)
    bars.set_xlim(-0.5, n - 0.5)
    bars.set(ylabel="instances", title=f"{int(counts.sum())} boxes in {len(records)} images")
    grid, _, _ = np.histogram2d(wh[:, 0], wh[:, 1], bins=50, range=[[0, 1], [0, 1]])
    shown = hist.imshow(
        np.where(grid.T > 0, grid.T, np.nan), origin="lower", extent=(0, 1, 0, 1), cmap="viridis"
    )
    fig.colorbar(shown, ax=hist, fraction=0.046, label="boxes")
    hist.set(xlabel="width / image width", ylabel="height / image height", title="Box sizes")
    fig.tight_layout()
    return fig


def plot_label_distribution(
    records: Sequence[DetectionRecord], class_names: Sequence[str], path: Path
) -> Path:
    """Instances per class (crowd / difficult boxes left out) and a 2-D histogram of box width
    against height, both as fractions of the image size."""
    return save_figure(_figure_label_distribution(records, class_names), path)


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
