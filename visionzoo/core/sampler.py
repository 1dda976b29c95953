"""A rank-aware sampler whose order and per-sample augmentation seeds depend only on
(seed, epoch, index), so a resumed run sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class SeededSampler(Sampler[tuple[int, ...]]):
    """Yields ``(index, sample_seed)`` pairs; datasets seed their random transforms with the
    second item. Shards across DDP ranks itself (the trainer's sampler replacement is off),
    padding with repeats like ``DistributedSampler`` so every rank gets the same count."""

    def __init__(
        self, num_samples: int, *, shuffle: bool, seed: int = 0, with_epoch: bool = False
    ) -> None:
        self.num_samples = num_samples
        self.with_epoch = with_epoch  # also yield the epoch (schedules like closing mosaic)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before every epoch."""
        self.epoch = epoch

    @staticmethod
    def _world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self._world()[1])

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        rank, world = self._world()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        total = len(self) * world
        order = (order * math.ceil(total / max(len(order), 1)))[:total]
        for idx in order[rank::world]:
            seed = (self.seed * 7_919 + self.epoch * 104_729 + idx) % 2**32
            yield (idx, seed, self.epoch) if self.with_epoch else (idx, seed)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Base of the batch samplers (``DataLoader(batch_sampler=...)``) whose batches depend on
    the epoch, such as P×K identity batches and MetaIQA's episodes.

    Lightning hands the epoch to ``loader.sampler`` and ``loader.batch_sampler.sampler`` only,
    never to the batch sampler itself, so without help such a sampler repeats epoch 0's
    batches for ever. ``sampler`` names the batch sampler itself: its ``set_epoch`` is then
    called where Lightning calls every sampler's, also when a run resumes mid-epoch."""

    epoch = 0

    @property
    def sampler(self) -> EpochBatchSampler:
        """This object, for Lightning's ``set_epoch`` call (see the class docstring)."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
