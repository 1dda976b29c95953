"""AutoAnchor: check that the anchors fit the training boxes and refit them when they don't.

Follows YOLOv5's procedure: the best-possible recall (BPR) is the fraction of training boxes
whose best anchor has width and height ratios within ``thr``; below 0.98 the anchors are refit
by k-means on box sizes, refined by a genetic search that mutates them to maximise the mean
best-anchor ratio, and kept only if they raise BPR.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.cluster.vq import kmeans

from visionzoo.detection.records import DetectionSource

log = logging.getLogger(__name__)


def box_sizes(source: DetectionSource, img_size: int, seed: int = 0) -> np.ndarray:
    """Training box (w, h) at ``img_size`` (long side), with YOLOv5's ±10 % scale jitter."""
    rng = np.random.default_rng(seed)
    sizes = []
    for rec in source.records:
        keep = ~rec.ignored
        if not keep.any():
            continue
        wh = rec.boxes[keep, 2:] - rec.boxes[keep, :2]
        sizes.append(wh * img_size / max(rec.width, rec.height) * rng.uniform(0.9, 1.1))
    return np.concatenate(sizes).astype(np.float64) if sizes else np.zeros((0, 2))


def _ratios(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``[n, k]`` worst-side ratio (≤ 1) of every box to every anchor."""
    r = wh[:, None] / anchors[None]
    return np.minimum(r, 1 / r).min(2)


def anchor_metrics(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> tuple[float, float]:
    """(best possible recall, anchors above threshold per box)."""
    x = _ratios(wh, anchors)
    return float((x.max(1) > 1 / thr).mean()), float((x > 1 / thr).sum(1).mean())


def fit_anchors(
    wh: np.ndarray, n: int = 9, thr: float = 4.0, generations: int = 1000, seed: int = 0
) -> np.ndarray:
    """k-means + genetic refinement; returns ``[n, 2]`` anchors sorted by area."""
    rng = np.random.default_rng(seed)
    wh = wh[(wh >= 2.0).any(1)]  # YOLOv5 drops boxes under 2 px before fitting

    def fitness(k: np.ndarray) -> float:
        best = _ratios(wh, k).max(1)
        return float((best * (best > 1 / thr)).mean())

    s = wh.std(0)
    if len(wh) >= n:
        k, _ = kmeans(wh / s, n, iter=30, seed=seed)
        k = k * s
    if len(wh) < n or len(k) != n:  # too few distinct boxes: random sizes in the data's range
        k = np.sort(rng.uniform(wh.min(), wh.max(), size=(n, 2)), axis=0)
    f = fitness(k)
    for _ in range(generations):
        v = np.ones(k.shape)
        while (v == 1).all():  # mutate until something changes
            v = (
                (rng.random(k.shape) < 0.9) * rng.random() * rng.standard_normal(k.shape) * 0.1 + 1
            ).clip(0.3, 3.0)
        candidate = (k * v).clip(min=2.0)
        fc = fitness(candidate)
        if fc > f:
            f, k = fc, candidate
    return k[np.argsort(k.prod(1))]


@torch.no_grad()
def check_anchors(
    model: torch.nn.Module, source: DetectionSource, img_size: int, thr: float | None = None
) -> bool:
    """Refit ``model.anchors`` (``[levels, k, 2]`` pixels) in place when BPR < 0.98;
    returns whether they changed. Deterministic, so every DDP rank reaches the same anchors."""
    thr = thr or getattr(model, "anchor_t", 4.0)
    wh = box_sizes(source, img_size)
    if len(wh) == 0:
        return False
    anchors = model.anchors.detach().cpu().numpy().reshape(-1, 2)
    bpr, aat = anchor_metrics(wh, anchors, thr)
    log.info("AutoAnchor: %.2f anchors/target, best possible recall %.4f", aat, bpr)
    if bpr >= 0.98:
        return False
    new = fit_anchors(wh, n=len(anchors), thr=thr)
    new_bpr, _ = anchor_metrics(wh, new, thr)
    if new_bpr <= bpr:
        log.info(
            "AutoAnchor: refit anchors reach BPR %.4f, not better; keeping the old ones", new_bpr
        )
        return False
    model.anchors.copy_(torch.from_numpy(new).reshape(model.anchors.shape).to(model.anchors))
    log.info("AutoAnchor: new anchors reach BPR %.4f (was %.4f)", new_bpr, bpr)
    return True
