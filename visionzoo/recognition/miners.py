"""Pair and triplet miners for metric learning: which (anchor, positive, negative) index tuples
of a batch a loss looks at.

Miners work on a precomputed ``(B, B)`` distance matrix (``pairwise_distances``) and the
``(B,)`` labels, and return index tensors as pytorch-metric-learning's miners do: triplets as
``(anchors, positives, negatives)``, pairs as ``(a1, positives, a2, negatives)`` where
``(a1[i], positives[i])`` is a positive pair and ``(a2[j], negatives[j])`` a negative one. Pairs
are ordered, so each unordered pair appears twice; an anchor is never its own positive. Mining
picks indices only and runs without gradients; the losses index the distance matrix again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Triplets = tuple[Tensor, Tensor, Tensor]
Pairs = tuple[Tensor, Tensor, Tensor, Tensor]


def pairwise_distances(embeddings: Tensor, *, normalize: bool = True) -> Tensor:
    """Euclidean distances ``(B, B)`` between the rows of ``embeddings`` ``(B, D)``, after L2
    normalisation when ``normalize`` (then distances lie in [0, 2]). Uses ``torch.cdist``, as
    pytorch-metric-learning's ``LpDistance`` does, so values and gradients agree with it."""
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (B, D), got {tuple(embeddings.shape)}")
    if normalize:
        embeddings = F.normalize(embeddings, p=2, dim=1)
    return torch.cdist(embeddings, embeddings, p=2)


def _masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, B)`` boolean masks of positive pairs (same label, not the diagonal) and negative
    pairs (different labels)."""
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return positive, ~same


@torch.no_grad()
def all_pairs(labels: Tensor) -> Pairs:
    """Every positive and every negative ordered pair of the batch: ``(a1, p, a2, n)``."""
    positive, negative = _masks(labels)
    a1, p = torch.where(positive)
    a2, n = torch.where(negative)
    return a1, p, a2, n


@torch.no_grad()
def all_triplets(labels: Tensor) -> Triplets:
    """Every valid triplet ``(a, p, n)``: ``p`` shares ``a``'s label (``p ≠ a``), ``n`` does
    not. ``B³`` booleans are formed, fine for metric-learning batch sizes (a few hundred)."""
    positive, negative = _masks(labels)
    a, p, n = torch.where(positive.unsqueeze(2) & negative.unsqueeze(1))
    return a, p, n


@torch.no_grad()
def batch_hard_triplets(distances: Tensor, labels: Tensor) -> Triplets:
    """One triplet per anchor: its farthest positive and its nearest negative ("batch hard",
    Hermans, Beyer & Leibe 2017, arXiv:1703.07737, Eq. 5; pml's ``BatchHardMiner``). Anchors
    without a positive or without a negative in the batch are left out."""
    positive, negative = _masks(labels)
    inf = torch.finfo(distances.dtype).max
    hardest_positive = distances.masked_fill(~positive, -inf).argmax(dim=1)
    hardest_negative = distances.masked_fill(~negative, inf).argmin(dim=1)
    keep = positive.any(dim=1) & negative.any(dim=1)
    anchors = torch.where(keep)[0]
    return anchors, hardest_positive[anchors], hardest_negative[anchors]


@torch.no_grad()
def semi_hard_triplets(distances: Tensor, labels: Tensor, *, margin: float) -> Triplets:
    """Triplets whose negative lies beyond the positive but inside the margin,
    ``d(a,p) < d(a,n) ≤ d(a,p) + margin`` (FaceNet, Schroff et al. 2015, Eq. 4; pml's
    ``TripletMarginMiner(type_of_triplets="semihard")``)."""
    a, p, n = all_triplets(labels)
    gap = distances[a, n] - distances[a, p]
    keep = (gap > 0) & (gap <= margin)
    return a[keep], p[keep], n[keep]


@torch.no_grad()
def hard_pairs(distances: Tensor, labels: Tensor, *, pos_margin: float, neg_margin: float) -> Pairs:
    """Positive pairs farther apart than ``pos_margin`` and negative pairs closer than
    ``neg_margin`` (pml's ``PairMarginMiner``): the pairs a contrastive loss still pushes."""
    a1, p, a2, n = all_pairs(labels)
    hard_positive = distances[a1, p] > pos_margin
    hard_negative = distances[a2, n] < neg_margin
    return a1[hard_positive], p[hard_positive], a2[hard_negative], n[hard_negative]


@torch.no_grad()
def distance_weighted_probabilities(
    distances: Tensor,
    labels: Tensor,
    *,
    dim: int,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
) -> Tensor:
    """Row-stochastic ``(B, B)`` probabilities of drawing each negative for each anchor in
    distance-weighted sampling (Wu, Manmatha, Smola & Krähenbühl 2017, "Sampling matters",
    arXiv:1706.07567, Sec. 4).

    On the unit sphere in ``R^dim`` pairwise distances have density
    ``q(d) ∝ d^(dim-2) (1 - d²/4)^((dim-3)/2)``; a negative is drawn with weight
    ``q(max(d, cutoff))^-1`` (clipping keeps very close pairs from dominating) and weight 0 at
    ``d ≥ nonzero_loss_cutoff``, where its loss would be zero. ``distances`` must come from
    L2-normalised embeddings. Rows with no admissible negative are all zero.
    """
    # q(d)^-1 spans hundreds of orders of magnitude: never in half precision (autocast)
    distances = distances.to(torch.promote_types(distances.dtype, torch.float32))
    d = distances.clamp(min=cutoff)
    log_weights = (2.0 - dim) * torch.log(d) - ((dim - 3) / 2) * torch.log1p(-0.25 * d**2)
    _, negative = _masks(labels)
    admissible = negative & (distances < nonzero_loss_cutoff) & torch.isfinite(log_weights)
    # Subtract each row's largest admissible log-weight before exponentiating: dim in the
    # hundreds puts the raw weights far outside float range.
    log_weights = log_weights.masked_fill(~admissible, float("-inf"))
    row_max = log_weights.amax(dim=1, keepdim=True).clamp(min=torch.finfo(d.dtype).min)
    weights = torch.exp(log_weights - row_max)
    total = weights.sum(dim=1, keepdim=True)
    return torch.where(total > 0, weights / total.clamp(min=1e-30), torch.zeros_like(weights))


@torch.no_grad()
def distance_weighted_triplets(
    distances: Tensor,
    labels: Tensor,
    *,
    dim: int,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    generator: torch.Generator | None = None,
) -> Triplets:
    """One negative per positive pair ``(a, p)``, drawn from
    ``distance_weighted_probabilities`` of the anchor's row. Unlike pml's
    ``DistanceWeightedMiner``, which also draws the positives at random, every positive pair is
    used once, as in the paper; anchors without an admissible negative are left out."""
    probabilities = distance_weighted_probabilities(
        distances, labels, dim=dim, cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff
    )
    a, p, _, _ = all_pairs(labels)
    admissible = probabilities.sum(dim=1) > 0
    keep = admissible[a]
    a, p = a[keep], p[keep]
    # Inverse-CDF sampling, one draw per pair: the first column whose cumulative weight
    # exceeds u, so a zero-weight column is never drawn (a few times faster than
    # torch.multinomial over thousands of rows on the CPU).
    cdf = probabilities.cumsum(dim=1)
    u = torch.rand(len(a), 1, generator=generator, dtype=cdf.dtype, device=cdf.device)
    n = torch.searchsorted(cdf[a], u * cdf[a, -1:], right=True).squeeze(1)
    # u · total may round up to the total; never step past the last drawable column.
    columns = torch.arange(probabilities.shape[1], device=cdf.device)
    last = torch.where(probabilities > 0, columns, 0).amax(dim=1)
    return a, p, torch.minimum(n, last[a])
