"""Metric-learning losses on a batch of embeddings and identity labels: triplet margin,
contrastive and lifted structure, each with the mining strategies of ``miners``.

Every loss has the interface the recognition task module relies on: the keyword-only
constructor takes ``embedding_size`` and ``num_classes`` (used where the method needs them) and
its own hyper-parameters; ``forward(embeddings (B, D), labels (B,) int64)`` returns a scalar and
leaves detached components to log in ``last_terms``. Distances are Euclidean between
L2-normalised embeddings unless ``normalize=False``. Losses and reductions follow
pytorch-metric-learning 2.9 (pml): per-triplet / per-pair losses are averaged over those that
are non-zero (pml's ``AvgNonZeroReducer``, Hermans et al.'s "BA≠0"), and a batch with no
mined tuple, or with only zero losses, gives 0 with a graph, so ``backward`` still works.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from visionzoo.recognition.miners import (
    all_pairs,
    all_triplets,
    batch_hard_triplets,
    distance_weighted_triplets,
    hard_pairs,
    pairwise_distances,
    semi_hard_triplets,
)


def mean_nonzero(losses: Tensor, embeddings: Tensor) -> Tensor:
    """Mean of the positive entries of ``losses`` (any shape); 0 (still attached to
    ``embeddings``' graph) when there are none."""
    active = losses[losses > 0]
    if len(active) == 0:
        return embeddings.sum() * 0
    return active.mean()


def _check_labels(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"embeddings must be (B, D) and labels (B,), got {tuple(embeddings.shape)} and "
            f"{tuple(labels.shape)}"
        )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")


class TripletMarginLoss(nn.Module):
    """``mean over non-zero triplets of max(0, d(a,p) - d(a,n) + margin)`` (FaceNet, Schroff
    et al. 2015, Eq. 2; pml's ``TripletMarginLoss``), on the triplets chosen by ``mining``:

    - ``batch_all``: every valid triplet of the batch (pml's loss without a miner);
    - ``batch_hard``: per anchor the farthest positive and nearest negative (TriHard, Hermans
      et al. 2017, Eq. 5; pml's ``BatchHardMiner``);
    - ``semi_hard``: every triplet with ``d(a,p) < d(a,n) ≤ d(a,p) + margin`` (FaceNet Sec. 3.2;
      pml's ``TripletMarginMiner(type_of_triplets="semihard")``, with the loss's margin);
    - ``distance_weighted``: one negative per positive pair drawn with weight ``q(d)^-1``
      (Wu et al. 2017, Sec. 4); needs ``normalize=True``.

    ``last_terms``: ``mined_triplets`` (how many were mined), ``active_triplets`` (how many
    have a non-zero loss).
    """

    MINING = ("batch_all", "batch_hard", "semi_hard", "distance_weighted")

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        margin: float = 0.2,  # FaceNet's α, in distance units (distances on the sphere: [0, 2])
        mining: str = "batch_hard",  # TriHard: Hermans et al.'s best plain-triplet variant
        normalize: bool = True,  # L2-normalise first, as pml's default LpDistance does
        cutoff: float = 0.5,  # distance_weighted: distances below are clipped (Wu et al.: 0.5)
        nonzero_loss_cutoff: float = 1.4,  # distance_weighted: farther negatives are not drawn
    ) -> None:
        super().__init__()
        _check_choice("mining", mining, self.MINING)
        if margin < 0:
            raise ValueError(f"margin={margin} must be non-negative")
        if mining == "distance_weighted" and not normalize:
            raise ValueError(
                "mining='distance_weighted' assumes embeddings on the unit sphere; "
                "set normalize=True"
            )
        self.margin = margin
        self.mining = mining
        self.normalize = normalize
        self.cutoff = cutoff
        self.nonzero_loss_cutoff = nonzero_loss_cutoff
        self.last_terms: dict[str, Tensor] = {}

    def mine(self, distances: Tensor, labels: Tensor, *, dim: int) -> tuple[Tensor, Tensor, Tensor]:
        """The ``(anchors, positives, negatives)`` this loss's ``mining`` picks from the
        ``(B, B)`` distances of ``dim``-dimensional embeddings."""
        if self.mining == "batch_all":
            return all_triplets(labels)
        if self.mining == "batch_hard":
            return batch_hard_triplets(distances, labels)
        if self.mining == "semi_hard":
            return semi_hard_triplets(distances, labels, margin=self.margin)
        return distance_weighted_triplets(
            distances,
            labels,
            dim=dim,
            cutoff=self.cutoff,
            nonzero_loss_cutoff=self.nonzero_loss_cutoff,
        )

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_labels(embeddings, labels)
        distances = pairwise_distances(embeddings, normalize=self.normalize)
        a, p, n = self.mine(distances, labels, dim=embeddings.shape[1])
        losses = torch.relu(distances[a, p] - distances[a, n] + self.margin)
        self.last_terms = {
            "mined_triplets": losses.new_tensor(float(len(a))),
            "active_triplets": (losses > 0).sum().detach().float(),
        }
        return mean_nonzero(losses, embeddings)


class ContrastiveLoss(nn.Module):
    """``mean_nonzero(max(0, d(a,p) - pos_margin)) + mean_nonzero(max(0, neg_margin - d(a,n)))``
    over positive and negative pairs (Hadsell, Chopra & LeCun 2006 with margins on both sides
    and unsquared distances, as pml's ``ContrastiveLoss``); each term is averaged over its
    non-zero pairs separately. ``mining``: ``all`` pairs, or ``hard`` ones only: positives
    farther than ``miner_pos_margin`` and negatives closer than ``miner_neg_margin`` (pml's
    ``PairMarginMiner``).

    ``last_terms``: ``pos_loss``, ``neg_loss`` and ``active_pos_pairs``, ``active_neg_pairs``.
    """

    MINING = ("all", "hard")

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        pos_margin: float = 0.0,  # positives closer than this cost nothing (pml's default)
        neg_margin: float = 1.0,  # negatives farther than this cost nothing (pml's default)
        mining: str = "all",  # every pair; the non-zero-mean already skips satisfied ones
        miner_pos_margin: float = 0.2,  # hard mining keeps positives beyond (pml's default)
        miner_neg_margin: float = 0.8,  # hard mining keeps negatives within (pml's default)
        normalize: bool = True,  # L2-normalise first, as pml's default LpDistance does
    ) -> None:
        super().__init__()
        _check_choice("mining", mining, self.MINING)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.mining = mining
        self.miner_pos_margin = miner_pos_margin
        self.miner_neg_margin = miner_neg_margin
        self.normalize = normalize
        self.last_terms: dict[str, Tensor] = {}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_labels(embeddings, labels)
        distances = pairwise_distances(embeddings, normalize=self.normalize)
        if self.mining == "hard":
            a1, p, a2, n = hard_pairs(
                distances,
                labels,
                pos_margin=self.miner_pos_margin,
                neg_margin=self.miner_neg_margin,
            )
        else:
            a1, p, a2, n = all_pairs(labels)
        pos_losses = torch.relu(distances[a1, p] - self.pos_margin)
        neg_losses = torch.relu(self.neg_margin - distances[a2, n])
        pos_loss = mean_nonzero(pos_losses, embeddings)
        neg_loss = mean_nonzero(neg_losses, embeddings)
        self.last_terms = {
            "pos_loss": pos_loss.detach(),
            "neg_loss": neg_loss.detach(),
            "active_pos_pairs": (pos_losses > 0).sum().detach().float(),
            "active_neg_pairs": (neg_losses > 0).sum().detach().float(),
        }
        return pos_loss + neg_loss


class LiftedStructureLoss(nn.Module):
    """Lifted structured loss (Oh Song, Xiang, Jegelka & Savarese 2016, arXiv:1511.06452,
    Eq. 4), in pml's ``LiftedStructureLoss`` form: for each ordered positive pair ``(i, j)``

        J_ij = log( Σ_{k ∉ class(i)} exp(neg_margin - d_ik) + exp(neg_margin - d_jk) )
               + d_ij - pos_margin,

    the loss is ``max(0, J_ij)² / 2`` averaged over the pairs where it is non-zero (each
    unordered pair counts twice, hence the 1/2). Distances are not squared, and the log-sum-exp
    is computed stably rather than with the paper's smooth upper bound trick.

    ``last_terms``: ``active_pos_pairs``.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        neg_margin: float = 1.0,  # the paper's α (pml's default)
        pos_margin: float = 0.0,  # pml's extra offset on positive distances
        normalize: bool = True,  # L2-normalise first, as pml's default LpDistance does
    ) -> None:
        super().__init__()
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin
        self.normalize = normalize
        self.last_terms: dict[str, Tensor] = {}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_labels(embeddings, labels)
        distances = pairwise_distances(embeddings, normalize=self.normalize)
        a1, p, _, _ = all_pairs(labels)
        negative = labels.unsqueeze(1) != labels.unsqueeze(0)
        if len(a1) == 0 or not bool(negative.any()):
            self.last_terms = {"active_pos_pairs": embeddings.new_zeros(())}
            return embeddings.sum() * 0
        # Per anchor: log Σ_k exp(neg_margin - d_ik) over its negatives; a pair combines both rows.
        per_row = (self.neg_margin - distances).masked_fill(~negative, float("-inf"))
        per_row = torch.logsumexp(per_row, dim=1)
        j = torch.logaddexp(per_row[a1], per_row[p]) + distances[a1, p] - self.pos_margin
        losses = torch.relu(j) ** 2 / 2
        self.last_terms = {"active_pos_pairs": (losses > 0).sum().detach().float()}
        return mean_nonzero(losses, embeddings)


METRIC_LOSSES: dict[str, type[nn.Module]] = {
    "triplet": TripletMarginLoss,
    "contrastive": ContrastiveLoss,
    "lifted": LiftedStructureLoss,
}
