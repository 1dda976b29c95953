"""Callbacks every family's training run gets: the latest-epoch checkpoint and a stop at the
first non-finite loss."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss; the message names the step and likely causes."""


def last_checkpoint(folder: Path) -> ModelCheckpoint:
    """``last.ckpt``: the state at the end of the latest epoch (after its validation), written
    every epoch whatever the monitored metric did. Lightning's own ``save_last`` follows the
    top-k saves, so it would hold the best epoch, not the last one."""
    return ModelCheckpoint(
        dirpath=folder,
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
    )


class FiniteLossGuard(pl.Callback):
    """Stops training at the first non-finite training loss, as torchvision's reference scripts
    do, instead of training on NaN to the end. Checkpoints written before stay as they are."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor) or torch.isfinite(loss).all():
            return
        value = float(loss.detach().float().mean())
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {trainer.current_epoch}, batch {idx} (global "
            f"step {trainer.global_step}); likely causes: a learning rate too high (now {lr:.3g}; "
            "lower optimizer.lr), no gradient clipping, or bad labels. The checkpoints written "
            "so far are kept"
        )
