"""Figures shared by families: bar charts and image grids, written as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (uint8), class 0 black, following the VOC bit-mixing scheme."""
    out = np.zeros((max(n, 1), 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def class_colours(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (uint8, shape [n, 3]), one per class id, none of them black:
    ``palette`` without its background entry, so class 0 is tinted like every other class."""
    return palette(n + 1)[1:]


def legend_column_inches(labels: Sequence[str], fontsize: float) -> float:
    """Estimated width in inches of one legend column holding ``labels`` at ``fontsize``
    points: a character is about 0.6 em, the colour patch plus padding about 3 em."""
    return (0.6 * max((len(t) for t in labels), default=1) + 3) * fontsize / 72


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a class-id mask (H, W), coloured by ``palette``, over an RGB uint8 image."""
    colours = palette(int(mask.max()) + 1)[np.clip(mask, 0, None)]
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colours
    return np.where((mask > 0)[..., None], blend, image).astype(np.uint8)


def save_figure(fig: plt.Figure, path: Path | str, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (PNG; parent folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def bar_chart(path: Path, names: Sequence[str], values: Sequence[float], title: str) -> None:
    """A labelled horizontal bar chart saved to ``path``."""
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh(list(names), [0.0 if np.isnan(v) else v for v in values], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    for i, v in enumerate(values):
        ax.text(min(v, 0.9) if not np.isnan(v) else 0, i, f" {v:.3f}", va="center")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def image_grid(path: Path, rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str]) -> None:
    """Save a grid of RGB images: one row per sample, one column per title."""
    n, m = len(rows), len(titles)
    fig, axes = plt.subplots(n, m, figsize=(2.2 * m, 2.2 * n), squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            axes[i][j].imshow(img)
            axes[i][j].axis("off")
            if i == 0:
                axes[i][j].set_title(titles[j])
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
