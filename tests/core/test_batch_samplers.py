"""Batch samplers whose batches change with the epoch get that epoch from Lightning: it calls
``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler`` only, so without
``EpochBatchSampler`` the P×K batches and MetaIQA's episodes repeated epoch 0 for ever (and
MetaIQA never left its meta phase)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from visionzoo.iqa.data import EpisodeBatchSampler
from visionzoo.recognition.pk_sampler import PKBatchSampler

LABELS = [i % 4 for i in range(32)]  # 4 identities / distortion types × 8


class Keyed(Dataset):
    """Returns the (index, seed) key it is given, so the module sees the batch's keys."""

    def __len__(self) -> int:
        return len(LABELS)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        return torch.tensor(key, dtype=torch.long)


class Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.setdefault(self.current_epoch, []).append(batch[:, 0].tolist())
        return self.w * 0.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def pk() -> PKBatchSampler:
    return PKBatchSampler(LABELS, p=2, k=4, seed=3)


def episodes() -> EpisodeBatchSampler:
    groups = {str(t): [i for i, x in enumerate(LABELS) if x == t] for t in range(4)}
    return EpisodeBatchSampler(
        groups, num_samples=len(LABELS), batch_size=8, meta_epochs=2, support=2, query=2,
        tasks=2, seed=3,
    )  # fmt: skip


@pytest.mark.parametrize("make", [pk, episodes], ids=["pk", "episodes"])
def test_lightning_advances_the_batch_samplers_epoch(make: Callable) -> None:
    module = Recorder()
    loader = DataLoader(Keyed(), batch_sampler=make())
    trainer = pl.Trainer(
        max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False,
    )  # fmt: skip
    trainer.fit(module, loader)
    for epoch in range(4):
        alone = make()
        alone.set_epoch(epoch)
        assert module.seen[epoch] == [[i for i, _ in b] for b in alone], epoch
    assert module.seen[0] != module.seen[1]


def test_episodes_are_one_type_per_task_then_mixed_batches() -> None:
    sampler = episodes()
    sampler.set_epoch(1)  # the last meta epoch: blocks of support + query from one type
    for batch in sampler:
        for block in (batch[:4], batch[4:]):
            assert len({LABELS[i] for i, _ in block}) == 1
    sampler.set_epoch(2)  # fine-tuning: plain shuffled batches
    mixed = [len({LABELS[i] for i, _ in b}) > 1 for b in sampler]
    assert any(mixed)
