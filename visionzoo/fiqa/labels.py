"""Quality pseudo-labels from a face recogniser's embeddings, for training FaceQnet and SDD-FIQA.

- ``faceqnet_labels`` (Hernandez-Ortega et al. 2019, sec. III-B): each image's label is its
  similarity to the most compliant image of its identity (here: the one with the highest
  hand-crafted ISO/IEC 29794-5-style score), cosine clipped to [0, 1], × 100; the reference
  image itself gets 100.
- ``sddfiqa_labels`` (Ou et al. 2021, eq. 5–8): each image's label is the Wasserstein-1
  distance between its similarities to the other images of its identity (intra-class) and to
  as many randomly drawn images of other identities (inter-class), averaged over ``repeats``
  draws and min-max scaled to 0–100 over the set.
"""

from __future__ import annotations

import numpy as np


def _normalised(embeddings: np.ndarray) -> np.ndarray:
    e = np.asarray(embeddings, np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def faceqnet_labels(
    embeddings: np.ndarray, identities: np.ndarray, compliance: np.ndarray
) -> np.ndarray:
    """Labels (N,) in 0–100 from embeddings (N, D), identity ids (N,) and compliance scores
    (N,) that choose each identity's reference image (the highest; the first on ties)."""
    e = _normalised(embeddings)
    ids = np.asarray(identities)
    compliance = np.asarray(compliance, np.float64)
    labels = np.empty(len(ids))
    for identity in np.unique(ids):
        members = np.flatnonzero(ids == identity)
        reference = members[np.argmax(compliance[members])]
        labels[members] = 100.0 * np.clip(e[members] @ e[reference], 0.0, 1.0)
        labels[reference] = 100.0
    return labels


def wasserstein_1d_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between equally sized 1-D samples along the last axis:
    the mean absolute difference of the sorted samples. ``(..., n), (..., n) -> (...)``."""
    return np.abs(np.sort(a, axis=-1) - np.sort(b, axis=-1)).mean(-1)


def sddfiqa_raw(
    embeddings: np.ndarray, identities: np.ndarray, *, repeats: int = 10, seed: int = 0
) -> np.ndarray:
    """Unscaled SDD-FIQA distances (N,); NaN for images alone in their identity."""
    e = _normalised(embeddings)
    ids = np.asarray(identities)
    rng = np.random.default_rng(seed)
    out = np.full(len(ids), np.nan)
    for i in range(len(ids)):
        same = np.flatnonzero(ids == ids[i])
        same = same[same != i]
        other = np.flatnonzero(ids != ids[i])
        if not len(same) or not len(other):
            continue
        intra = e[same] @ e[i]
        few = len(other) < len(same)  # draws repeat images only when there are too few
        draws = np.stack([rng.choice(other, size=len(same), replace=few) for _ in range(repeats)])
        inter = e[draws] @ e[i]  # (repeats, n_same)
        out[i] = wasserstein_1d_equal(np.broadcast_to(intra, inter.shape), inter).mean()
    return out


def sddfiqa_labels(
    embeddings: np.ndarray, identities: np.ndarray, *, repeats: int = 10, seed: int = 0
) -> np.ndarray:
    """SDD-FIQA labels (N,) in 0–100 (images alone in their identity get the set's median)."""
    raw = sddfiqa_raw(embeddings, identities, repeats=repeats, seed=seed)
    valid = np.isfinite(raw)
    if not valid.any():
        raise ValueError("SDD-FIQA labels need identities with at least two images")
    lo, hi = raw[valid].min(), raw[valid].max()
    scaled = 100.0 * (raw - lo) / max(hi - lo, 1e-12)
    scaled[~valid] = np.median(scaled[valid])
    return scaled
