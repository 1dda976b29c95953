"""Verification figures: ROC curves on a log FAR axis and genuine/impostor score histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visionzoo.core.plots import plt, save_figure

HISTOGRAM_BINS = 50


def plot_roc(fpr: Any, tpr: Any, path: Path | str, label: str) -> Path:
    """Write the ROC curve (TAR against FAR, FAR on a log axis) of ``roc_metrics`` to ``path``.

    ``fpr``, ``tpr``: (K,) operating points; points at FAR = 0 cannot sit on a log axis and are
    left out. ``label`` names the curve in the legend. Returns ``path``.
    """
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    if fpr.shape != tpr.shape:
        raise ValueError(f"fpr {fpr.shape} and tpr {tpr.shape} must have the same shape")
    shown = fpr > 0
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(fpr[shown], tpr[shown], label=label)
    ax.set_xscale("log")
    if shown.any():
        ax.set_xlim(fpr[shown].min(), 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_score_histograms(
    scores: Any, issame: Any, path: Path | str, threshold: float | None = None
) -> Path:
    """Write the densities of genuine (same identity) and impostor pair scores to ``path``,
    on shared bins, with an optional decision ``threshold`` line. ``scores``, ``issame``: (N,).
    Returns ``path``."""
    scores = np.asarray(scores, dtype=float).reshape(-1)
    same = np.asarray(issame).reshape(-1).astype(bool)
    if scores.shape != same.shape:
        raise ValueError(f"scores ({scores.size}) and issame ({same.size}) differ in length")
    bins = np.histogram_bin_edges(scores, bins=HISTOGRAM_BINS)
    fig, ax = plt.subplots(figsize=(6, 4))
    for mask, name, colour in ((same, "genuine", "tab:green"), (~same, "impostor", "tab:red")):
        if mask.any():
            ax.hist(
                scores[mask],
                bins=bins,
                density=True,
                alpha=0.5,
                color=colour,
                label=f"{name} ({int(mask.sum())})",
            )
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("similarity score")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
