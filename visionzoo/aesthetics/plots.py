"""Aesthetics figures: score histograms per validation and the contact sheet of ``predict.py``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from visionzoo.core.plots import plt


def score_histogram(path: Path, pred: np.ndarray, true: np.ndarray, title: str) -> None:
    """Overlaid histograms of predicted and true mean scores (both on the 1..10 scale)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(1, 10, 37)
    ax.hist(true, bins=bins, alpha=0.55, label="true mean", color="tab:blue")
    ax.hist(np.clip(pred, 1, 10), bins=bins, alpha=0.55, label="predicted mean", color="tab:orange")
    ax.axvline(5.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("mean score")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def class_histogram(path: Path, high: np.ndarray, true: np.ndarray, title: str) -> None:
    """Histograms of true mean scores of the images predicted high and of those predicted low
    (binary models, which predict no mean score)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(1, 10, 37)
    ax.hist(true[high], bins=bins, alpha=0.55, label="predicted high", color="tab:green")
    ax.hist(true[~high], bins=bins, alpha=0.55, label="predicted low", color="tab:red")
    ax.axvline(5.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("true mean score")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet(
    path: Path,
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    *,
    thumb: int = 128,
    columns: int = 6,
) -> None:
    """Thumbnails (each fitted into ``thumb`` × ``thumb``) in the given order, row by row, each
    with its caption underneath; saved as one PNG."""
    rows = max(1, -(-len(images) // columns))
    cell_h = thumb + 18
    sheet = Image.new("RGB", (columns * thumb, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        tile = Image.fromarray(image)
        tile.thumbnail((thumb, thumb))
        x, y = (i % columns) * thumb, (i // columns) * cell_h
        sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
        draw.text((x + 4, y + thumb + 3), caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
