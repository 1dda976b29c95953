"""PKBatchSampler: P identities × K images per batch, an order that is a pure function of
(seed, epoch), balanced use of identities and images, SeededSampler's per-sample seeds, and
DDP sharding into distinct batches of equal count per rank."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from visionzoo.core.sampler import SeededSampler
from visionzoo.recognition.pk_sampler import PKBatchSampler

P, K = 4, 3
# 11 identities with 1-12 images each: 1 and 2 are fewer than K (drawn with replacement).
COUNTS = [5, 1, 12, 3, 2, 7, 4, 9, 3, 6, 8]
LABELS = [identity for identity, n in enumerate(COUNTS) for _ in range(n)]
LABELS = [
    LABELS[i] for i in torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(0))
]


def _epoch(sampler: PKBatchSampler, epoch: int) -> list[list[tuple[int, int]]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def _as_ranks(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    """Pretend to run as ``rank`` of ``world`` under torch.distributed."""
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: world)


def test_every_batch_holds_p_identities_times_k_images() -> None:
    sampler = PKBatchSampler(LABELS, p=P, k=K, seed=3)
    for epoch in range(3):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler) == len(LABELS) // (P * K)
        for batch in batches:
            labels = [LABELS[i] for i, _ in batch]
            assert len(batch) == P * K
            assert sorted(Counter(labels).values()) == [K] * P
            for identity in set(labels):
                images = {i for i, _ in batch if LABELS[i] == identity}
                # K distinct images where there are K; otherwise all of them (and repeats)
                assert len(images) == min(K, COUNTS[identity])


def test_identities_and_images_are_used_evenly() -> None:
    """Each identity is drawn once before any is drawn again, and within an identity each
    image once before any again: use counts differ by at most one."""
    sampler = PKBatchSampler(LABELS * 4, p=P, k=K, seed=1)  # a longer epoch, same identities
    labels = LABELS * 4
    batches = _epoch(sampler, 0)
    identity_uses = Counter(labels[batch[j * K][0]] for batch in batches for j in range(P))
    assert set(identity_uses) == set(range(len(COUNTS)))
    assert max(identity_uses.values()) - min(identity_uses.values()) <= 1
    image_uses = Counter(i for batch in batches for i, _ in batch)
    for identity, n in enumerate(COUNTS):
        if n >= K:
            uses = [image_uses[i] for i in range(len(labels)) if labels[i] == identity]
            assert max(uses) - min(uses) <= 1


def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    first = PKBatchSampler(LABELS, p=P, k=K, seed=5)
    second = PKBatchSampler(LABELS, p=P, k=K, seed=5)
    _epoch(second, 4)  # a different history must not matter (exact resume)
    assert _epoch(first, 2) == _epoch(second, 2)
    assert _epoch(first, 2) != _epoch(first, 3)
    assert _epoch(first, 2) != _epoch(PKBatchSampler(LABELS, p=P, k=K, seed=6), 2)


def test_sample_seeds_follow_seeded_sampler() -> None:
    """An index's first appearance in an epoch carries SeededSampler's seed for it; a repeat
    carries a different one (a new augmentation of the same image)."""
    seeded = SeededSampler(len(LABELS), shuffle=False, seed=9)
    seeded.set_epoch(2)
    reference = dict(seeded)
    seen: dict[int, set[int]] = {}
    for batch in _epoch(PKBatchSampler(LABELS, p=P, k=K, seed=9), 2):
        for index, sample_seed in batch:
            if index not in seen:
                assert sample_seed == reference[index]
            assert sample_seed not in seen.setdefault(index, set())
            seen[index].add(sample_seed)
    assert any(len(s) > 1 for s in seen.values())  # repeats happened (identities 1 and 4)


@pytest.mark.parametrize("labels", [LABELS, LABELS[: -P * K]])  # even and odd batch counts
def test_ranks_get_distinct_batches_of_equal_count(
    monkeypatch: pytest.MonkeyPatch, labels: list[int]
) -> None:
    single = _epoch(PKBatchSampler(labels, p=P, k=K, seed=2), 1)
    per_rank = []
    for rank in (0, 1):
        _as_ranks(monkeypatch, rank, 2)
        sampler = PKBatchSampler(labels, p=P, k=K, seed=2)
        per_rank.append(_epoch(sampler, 1))
        assert len(per_rank[-1]) == len(sampler) == math.ceil(len(single) / 2)
    zero, one = per_rank
    assert not any(batch in one for batch in zero)
    # Together they are the single-process epoch, dealt out in turn (padded to an even count).
    dealt = [batch for pair in zip(zero, one, strict=True) for batch in pair]
    assert dealt[: len(single)] == single


def test_works_as_a_data_loader_batch_sampler() -> None:
    class Echo(Dataset):
        def __len__(self) -> int:
            return len(LABELS)

        def __getitem__(self, item: tuple[int, int]) -> tuple[int, int]:
            index, sample_seed = item
            return LABELS[index], sample_seed

    loader = DataLoader(Echo(), batch_sampler=PKBatchSampler(LABELS, p=P, k=K))
    labels, _ = next(iter(loader))
    assert labels.shape == (P * K,) and len(set(labels.tolist())) == P
    assert len(loader) == len(LABELS) // (P * K)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="p=12 identities per batch.*only 11"):
        PKBatchSampler(LABELS, p=12, k=K)
    with pytest.raises(ValueError, match="k=0"):
        PKBatchSampler(LABELS, p=P, k=0)
