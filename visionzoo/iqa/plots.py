"""Image-quality figures: predicted score against MOS with VQEG's fitted logistic."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from scipy import optimize, stats

from visionzoo.core.plots import plt
from visionzoo.metrics.correlation import logistic4


def fit_logistic4(pred: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Least-squares parameters of ``logistic4`` from ``pred`` to ``target`` (the fit behind
    ``plcc_logistic``, started the same way), or ``None`` when it does not converge."""
    increasing = stats.spearmanr(pred, target).statistic >= 0
    hi, lo = (target.max(), target.min()) if increasing else (target.min(), target.max())
    p0 = [hi, lo, float(np.mean(pred)), float(np.std(pred)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic4, pred, target, p0=p0, maxfev=10_000)
    except RuntimeError:
        return None
    return params


def score_scatter(
    path: Path, pred: np.ndarray, target: np.ndarray, title: str, *, xlabel: str = "score"
) -> None:
    """Scatter of ``pred`` [N] against ``target`` [N] (MOS) with the fitted logistic curve."""
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    ax.scatter(pred, target, s=8, alpha=0.6, color="tab:blue")
    if len(pred) >= 4 and np.ptp(pred) > 0 and np.ptp(target) > 0:
        params = fit_logistic4(pred, target)
        if params is not None:
            xs = np.linspace(pred.min(), pred.max(), 200)
            ax.plot(xs, logistic4(xs, *params), color="tab:red", lw=1.5, label="VQEG logistic")
            ax.legend(loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MOS")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
