"""Face verification, identification and retrieval metrics on embeddings (numpy; torch tensors
are accepted): insightface's k-fold verification accuracy, ROC / AUC / EER / TAR@FAR, closed-set
rank-k identification and leave-one-out precision@1 / MAP@R."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # false accept rates TAR is reported at
# insightface's threshold grid on squared L2 distance of unit vectors (range [0, 4]).
DISTANCE_THRESHOLDS = np.arange(0, 4, 0.01)
CHUNK_ROWS = 1024  # query rows scored at once: bounds the (rows, N) similarity block in memory


def _matrix(x: Any, name: str) -> np.ndarray:
    """A float64 (N, D) array from a numpy array or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be a finite (N, D) array, got shape {array.shape}")
    return array


def _vector(x: Any, name: str, length: int | None = None) -> np.ndarray:
    """A 1-D array (of ``length`` when given) from a list, numpy array or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    array = np.asarray(x).reshape(-1)
    if length is not None and array.size != length:
        raise ValueError(f"{name} has {array.size} entries, expected {length}")
    return array


def l2_normalize(emb: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). ``(N, D) -> (N, D)``."""
    emb = _matrix(emb, "embeddings")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norms, 1e-12)


def flip_fuse(emb: Any, emb_flipped: Any) -> np.ndarray:
    """insightface's flip test: embeddings of the image and of its mirror image are added, then
    L2-normalised. ``(N, D), (N, D) -> (N, D)``."""
    emb, emb_flipped = _matrix(emb, "emb"), _matrix(emb_flipped, "emb_flipped")
    if emb.shape != emb_flipped.shape:
        raise ValueError(f"emb {emb.shape} and emb_flipped {emb_flipped.shape} differ in shape")
    return l2_normalize(emb + emb_flipped)


def _fold_accuracy(dist: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of "same iff dist < t" for every threshold t, by counting sorted distances."""
    genuine, impostor = np.sort(dist[same]), np.sort(dist[~same])
    accepted_genuine = np.searchsorted(genuine, thresholds, side="left")
    rejected_impostor = impostor.size - np.searchsorted(impostor, thresholds, side="left")
    return (accepted_genuine + rejected_impostor) / dist.size


def verification_accuracy(
    emb1: Any,
    emb2: Any,
    issame: Any,
    *,
    folds: int = 10,
    flip_fused: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Pair verification accuracy as insightface's ``eval/verification.py`` computes it.

    ``emb1``, ``emb2``: (N, D) embeddings of the two faces of N pairs; ``issame``: (N,) bools.
    ``flip_fused``: optional (emb1_flipped, emb2_flipped) embeddings of the mirrored images; each
    side is then ``flip_fuse``d first (insightface's "Accuracy-Flip"). Embeddings are
    L2-normalised; a pair is "same" when its squared L2 distance (= 2 - 2·cosine) is below a
    threshold from ``np.arange(0, 4, 0.01)``. Pairs are split into ``folds`` contiguous folds
    (scikit-learn ``KFold`` without shuffling); for each fold the threshold with the best
    accuracy on the other folds (the first one on ties) is applied to it. ``folds=1`` tunes and
    tests on all pairs, as insightface's ``LFold``.

    Returns ``accuracy`` / ``accuracy_std`` (mean, population std over folds), ``threshold``
    (mean chosen squared distance) and ``threshold_cosine`` (the same as a cosine similarity),
    ``fold_accuracies`` and ``fold_thresholds``.
    """
    emb1, emb2 = _matrix(emb1, "emb1"), _matrix(emb2, "emb2")
    if emb1.shape != emb2.shape:
        raise ValueError(f"emb1 {emb1.shape} and emb2 {emb2.shape} must have the same shape")
    if flip_fused is not None:
        emb1, emb2 = flip_fuse(emb1, flip_fused[0]), flip_fuse(emb2, flip_fused[1])
    n = emb1.shape[0]
    same = _vector(issame, "issame", n).astype(bool)
    if not 1 <= folds <= n:
        raise ValueError(f"folds must be between 1 and the number of pairs ({n}), got {folds}")
    dist = np.sum(np.square(l2_normalize(emb1) - l2_normalize(emb2)), axis=1)
    indices = np.arange(n)
    # np.array_split gives the first n % folds folds one extra pair, exactly as KFold does.
    splits = (
        [(indices, indices)]
        if folds == 1
        else [(np.setdiff1d(indices, test), test) for test in np.array_split(indices, folds)]
    )
    accuracies, thresholds = [], []
    for train, test in splits:
        best = DISTANCE_THRESHOLDS[
            np.argmax(_fold_accuracy(dist[train], same[train], DISTANCE_THRESHOLDS))
        ]
        accuracies.append(_fold_accuracy(dist[test], same[test], np.array([best]))[0])
        thresholds.append(best)
    threshold = float(np.mean(thresholds))
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "threshold": threshold,
        "threshold_cosine": 1.0 - threshold / 2.0,
        "fold_accuracies": [float(a) for a in accuracies],
        "fold_thresholds": [float(t) for t in thresholds],
    }


def roc_metrics(scores: Any, issame: Any, *, fars: Sequence[float] = FARS) -> dict[str, Any]:
    """ROC analysis of similarity scores (higher = more alike, e.g. cosine) of labelled pairs.

    ``scores``, ``issame``: (N,). Returns the ROC curve over every distinct score, as
    ``sklearn.metrics.roc_curve(drop_intermediate=False)`` (``fpr``, ``tpr``, ``thresholds``:
    accept when score >= threshold, the first one +inf), ``auc`` (trapezoidal), ``eer`` (where
    the piecewise-linear ROC meets FAR = 1 - TAR) with ``eer_threshold`` (the first operating
    point at or past it), and for each FAR in ``fars``: ``tar_at_far[far]``, the highest TAR
    of an operating point with FAR <= far, and ``threshold_at_far[far]``. A FAR below
    1 / (number of impostor pairs) cannot be measured; its entries are None and
    ``unresolved[far]`` says why. ``num_genuine`` / ``num_impostor`` count the pairs.
    """
    scores = _vector(scores, "scores").astype(np.float64)
    same = _vector(issame, "issame", scores.size).astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite; drop or fix the NaN/inf similarity scores")
    num_genuine, num_impostor = int(same.sum()), int((~same).sum())
    if num_genuine == 0 or num_impostor == 0:
        raise ValueError(
            f"ROC needs genuine and impostor pairs, got {num_genuine} genuine and "
            f"{num_impostor} impostor; check issame"
        )
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_same = scores[order], same[order]
    # Last position of each run of equal scores: one operating point per distinct threshold.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    accepted_genuine = np.cumsum(sorted_same)[ends]
    accepted_impostor = ends + 1 - accepted_genuine
    tpr = np.r_[0.0, accepted_genuine / num_genuine]
    fpr = np.r_[0.0, accepted_impostor / num_impostor]
    thresholds = np.r_[np.inf, sorted_scores[ends]]

    # fpr + tpr - 1 never decreases along the curve (-1 at the start, +1 at the end); the EER
    # is where it crosses zero.
    gap = fpr + tpr - 1.0
    cross = int(np.argmax(gap >= 0))
    if gap[cross] == 0:
        eer = fpr[cross]
    else:
        w = -gap[cross - 1] / (gap[cross] - gap[cross - 1])
        eer = fpr[cross - 1] + w * (fpr[cross] - fpr[cross - 1])

    tar_at_far: dict[float, float | None] = {}
    threshold_at_far: dict[float, float | None] = {}
    unresolved: dict[float, str] = {}
    for far in fars:
        if far * num_impostor < 1:
            tar_at_far[far] = threshold_at_far[far] = None
            unresolved[far] = (
                f"FAR {far:g} needs at least {int(np.ceil(1 / far))} impostor pairs "
                f"(one false accept), there are {num_impostor}"
            )
            continue
        point = int(np.searchsorted(fpr, far, side="right")) - 1  # last point with fpr <= far
        tar_at_far[far] = float(tpr[point])
        threshold_at_far[far] = float(thresholds[point])
    return {
        "fpr": fpr,
        "tpr": tpr,
        "thresholds": thresholds,
        "auc": float(np.trapezoid(tpr, fpr)),
        "eer": float(eer),
        "eer_threshold": float(thresholds[cross]),
        "tar_at_far": tar_at_far,
        "threshold_at_far": threshold_at_far,
        "unresolved": unresolved,
        "num_genuine": num_genuine,
        "num_impostor": num_impostor,
    }


def identification(
    gallery_emb: Any,
    gallery_labels: Any,
    probe_emb: Any,
    probe_labels: Any,
    *,
    ranks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Closed-set identification rates (CMC at ``ranks``) by cosine similarity.

    ``gallery_emb`` (G, D) with ``gallery_labels`` (G,), ``probe_emb`` (P, D) with
    ``probe_labels`` (P,); every probe identity must be in the gallery. An identity scores its
    best-matching gallery image; a probe is correct at rank k when fewer than k other
    identities score strictly higher than its own (ties count in its favour). Returns
    ``rank{k}`` for each k: the fraction of probes correct at rank k.
    """
    gallery = l2_normalize(gallery_emb)
    probe = l2_normalize(probe_emb)
    if gallery.shape[1] != probe.shape[1]:
        raise ValueError(f"gallery ({gallery.shape[1]}-d) and probe ({probe.shape[1]}-d) differ")
    g_labels = _vector(gallery_labels, "gallery_labels", gallery.shape[0])
    p_labels = _vector(probe_labels, "probe_labels", probe.shape[0])
    _, inverse = np.unique(np.concatenate([g_labels, p_labels]), return_inverse=True)
    g_index, p_index = inverse[: g_labels.size], inverse[g_labels.size :]
    known = np.isin(p_index, g_index)
    if not known.all():
        raise ValueError(
            f"{int((~known).sum())} probes have identities missing from the gallery (e.g. "
            f"{p_labels[~known][0]!r}); closed-set identification needs every probe enrolled"
        )
    # Identity columns are numbered by g_index, which may skip probe-only numbers: renumber.
    identities, g_index = np.unique(g_index, return_inverse=True)
    p_index = np.searchsorted(identities, p_index)
    order = np.argsort(g_index, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(g_index[order])) + 1]
    ranks_of_truth = []
    for begin in range(0, probe.shape[0], CHUNK_ROWS):
        sim = probe[begin : begin + CHUNK_ROWS] @ gallery[order].T
        per_identity = np.maximum.reduceat(sim, starts, axis=1)  # (rows, identities)
        truth = per_identity[np.arange(sim.shape[0]), p_index[begin : begin + CHUNK_ROWS]]
        ranks_of_truth.append(1 + np.sum(per_identity > truth[:, None], axis=1))
    rank = np.concatenate(ranks_of_truth)
    return {f"rank{k}": float(np.mean(rank <= k)) for k in ranks}


def retrieval(emb: Any, labels: Any) -> dict[str, float]:
    """Leave-one-out retrieval within one labelled set, by cosine similarity: each sample
    queries all the others. ``emb`` (N, D), ``labels`` (N,).

    ``precision_at_1``: fraction of queries whose nearest neighbour shares their label.
    ``map_at_r``: MAP@R (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020, eq. 1):
    with R the number of other samples of the query's label,
    ``(1/R) * sum_{i<=R} P(i) * rel(i)`` over its R nearest neighbours, averaged over queries.
    Queries alone in their label (R = 0) are left out of both, as pytorch-metric-learning does.
    """
    emb = l2_normalize(emb)
    n = emb.shape[0]
    _, label_index = np.unique(_vector(labels, "labels", n), return_inverse=True)
    r_all = np.bincount(label_index)[label_index] - 1
    queries = np.flatnonzero(r_all > 0)
    if queries.size == 0:
        raise ValueError("retrieval needs at least one label with two or more samples")
    hits_at_1, average_precisions = [], []
    for begin in range(0, queries.size, CHUNK_ROWS):
        rows = queries[begin : begin + CHUNK_ROWS]
        sim = emb[rows] @ emb.T
        sim[np.arange(rows.size), rows] = -np.inf  # a query never retrieves itself
        r = r_all[rows]
        k = int(r.max())
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), 1), 1)
        relevant = label_index[top] == label_index[rows][:, None]  # (rows, k)
        within_r = np.arange(k)[None, :] < r[:, None]
        precision = np.cumsum(relevant, axis=1) / np.arange(1, k + 1)
        average_precisions.append((precision * relevant * within_r).sum(1) / r)
        hits_at_1.append(relevant[:, 0])
    return {
        "precision_at_1": float(np.mean(np.concatenate(hits_at_1))),
        "map_at_r": float(np.mean(np.concatenate(average_precisions))),
    }
