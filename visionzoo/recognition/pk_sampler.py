"""P×K identity batches for metric learning: each batch holds P identities with K images each
(Hermans, Beyer & Leibe 2017, "In defense of the triplet loss", Sec. 3.1), so every anchor has
positives and negatives in its batch. Follows the ``SeededSampler`` contract: the batches and
the per-sample augmentation seeds are a pure function of (seed, epoch), and DDP ranks shard the
batches themselves, so a resumed run sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from visionzoo.core.sampler import EpochBatchSampler, SeededSampler


def _draw(pool: list[int], population: Sequence[int], n: int, g: torch.Generator) -> list[int]:
    """``n`` distinct items from the front of ``pool`` (the not yet used part of a shuffled
    ``population``, consumed in place). When the pool runs short, a fresh shuffle of
    ``population`` refills it, skipping the items already taken for this draw, so that every
    item is used once before any is used again and a draw never repeats an item."""
    taken = pool[:n]
    del pool[:n]
    if len(taken) < n:
        fresh = [population[i] for i in torch.randperm(len(population), generator=g).tolist()]
        used = set(taken)
        extra = [x for x in fresh if x not in used][: n - len(taken)]
        chosen = set(extra)
        pool[:] = [x for x in fresh if x not in chosen]
        taken += extra
    return taken


class PKBatchSampler(EpochBatchSampler):
    """Yields batches as lists of ``(index, sample_seed)``: P distinct identities, K images of
    each, identity after identity. A batch sampler for ``DataLoader(batch_sampler=...)``
    (``VisionDataModule.batch_sampler``).

    Identities are drawn uniformly (the paper's "randomly sampling P classes"), cycling through
    shuffles of all identities so each is used once before any repeats; each identity's images
    are likewise consumed from its own shuffles. An identity with fewer than K images gives all
    of them plus K - n drawn with replacement. One epoch has ``max(1, len(labels) // (P·K))``
    batches in all, split over DDP ranks with padding (``ceil(total / world)`` per rank, rank r
    taking batches r, r + world, ...), as ``SeededSampler`` splits samples.

    ``sample_seed`` is ``SeededSampler``'s ``(seed · 7919 + epoch · 104729 + index) mod 2³²``
    for an index's first appearance in the epoch; its c-th repeat (with replacement, or when an
    identity's images cycle) adds ``c · 15485863``, so a repeated image gets a new augmentation.
    """

    def __init__(self, labels: Sequence[int], *, p: int, k: int, seed: int = 0) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"P×K sampler: p={p} and k={k} must both be at least 1")
        by_identity: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_identity.setdefault(int(label), []).append(index)
        if len(by_identity) < p:
            raise ValueError(
                f"P×K sampler: p={p} identities per batch, but the labels hold only "
                f"{len(by_identity)}; lower p (the batch size / k) or add identities"
            )
        self.identities = sorted(by_identity)
        self.images = [by_identity[i] for i in self.identities]
        self.p = p
        self.k = k
        self.seed = seed
        self.epoch = 0
        self.num_batches = max(1, len(labels) // (p * k))  # one epoch, all ranks together

    def __len__(self) -> int:
        return math.ceil(self.num_batches / SeededSampler._world()[1])

    def _images(self, identity: int, pools: list[list[int]], g: torch.Generator) -> list[int]:
        images = self.images[identity]
        if len(images) < self.k:
            extra = torch.randint(len(images), (self.k - len(images),), generator=g).tolist()
            return [images[i] for i in torch.randperm(len(images), generator=g).tolist()] + [
                images[i] for i in extra
            ]
        return _draw(pools[identity], images, self.k, g)

    def _batches(self, count: int) -> Iterator[list[int]]:
        """The epoch's first ``count`` batches of indices, for all ranks (generated lazily: a
        large dataset's epoch is a long stream)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        identity_pool: list[int] = []
        image_pools: list[list[int]] = [[] for _ in self.images]
        everyone = list(range(len(self.identities)))
        for _ in range(count):
            chosen = _draw(identity_pool, everyone, self.p, g)
            yield [i for c in chosen for i in self._images(c, image_pools, g)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rank, world = SeededSampler._world()
        seen: dict[int, int] = {}
        for position, batch in enumerate(self._batches(len(self) * world)):
            seeded = []
            for index in batch:
                repeat = seen.get(index, 0)
                seen[index] = repeat + 1
                sample_seed = (
                    self.seed * 7_919 + self.epoch * 104_729 + index + repeat * 15_485_863
                ) % 2**32
                seeded.append((index, sample_seed))
            if position % world == rank:
                yield seeded
