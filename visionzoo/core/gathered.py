"""A base for metrics whose ``compute`` needs every sample of the dataset at once (rank
correlations, verification folds, COCO mAP), gathered from all DDP ranks.

Summed-state metrics (accuracy, confusion matrices) belong in torchmetrics; these cannot be
reduced per rank, so each rank keeps its samples, keyed by a sample id, and ``compute`` works
on the union. Keys make padding harmless: ``SeededSampler`` (like ``DistributedSampler``)
repeats samples so every rank gets the same count, and a key seen twice counts once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import torch.distributed as dist

# A sample's id in its dataset: an index or an image id. Keys of one metric must be mutually
# comparable (all ints, or all strings), since every rank sorts them the same way.
SampleKey = int | str
V = TypeVar("V")  # what a subclass stores per sample: plain CPU data that pickles cheaply


class GatheredMetric(ABC, Generic[V]):
    """Stores one value per sample key; ``gathered()`` is the union over ranks, sorted by key.

    Subclasses define ``update(...)`` (any signature), which turns a batch into per-sample
    values and calls ``_add``, and ``compute()`` over ``gathered()``. A key added twice keeps
    its first value, on one rank and across ranks (lower rank first).

    ``gathered()``, and so ``compute()``, is a collective under ``torch.distributed``: every
    rank must call it, and every rank gets the same result.

    A plain class rather than a torchmetrics ``Metric``: torchmetrics syncs tensor states by
    concatenation, which can neither carry arbitrary per-sample values (COCO predictions of
    varying size) nor drop the padded repeats by key.
    """

    def __init__(self) -> None:
        self._samples: dict[SampleKey, V] = {}

    def _add(self, key: SampleKey, value: V) -> None:
        """Store ``value`` for ``key`` unless the key is already there."""
        self._samples.setdefault(key, value)

    def reset(self) -> None:
        """Forget every stored sample (call at the start or end of each evaluation)."""
        self._samples = {}

    def local_samples(self) -> dict[SampleKey, V]:
        """This rank's samples, in the order they were first added."""
        return self._samples

    def gathered(self) -> dict[SampleKey, V]:
        """The samples of all ranks (``all_gather_object`` when the default process group has
        more than one rank, else this rank's), one per key, sorted by key."""
        parts: list[Any] = [self._samples]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self._samples)
        merged: dict[SampleKey, V] = {}
        for part in parts:
            for key, value in part.items():
                merged.setdefault(key, value)
        try:
            keys = sorted(merged)
        except TypeError as err:
            kinds = sorted({type(k).__name__ for k in merged})
            raise TypeError(
                f"{type(self).__name__}: sample keys of types {kinds} cannot be sorted; pass "
                "keys of one kind (dataset indices or image ids) to update()"
            ) from err
        return {key: merged[key] for key in keys}

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """The metric over ``gathered()``; a collective, like ``gathered()``."""
