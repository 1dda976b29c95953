"""Callbacks every family's training run gets: the latest-epoch checkpoint, a stop at the
first non-finite loss and throughput logging."""

from __future__ import annotations

import math
import time
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
    do, instead of training on NaN to the end. Checkpoints written before stay as they are.

    On CPU every step is checked. On an accelerator reading the loss would stall the device each
    step, so a flag is kept on the device and read every ``gpu_interval`` steps and at each
    epoch's end; the error then names the span of steps it happened in."""

    def __init__(self, gpu_interval: int = 25) -> None:
        self.gpu_interval = gpu_interval
        self._bad: torch.Tensor | None = None
        self._since = 0  # first global step the flag covers

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad = bad if self._bad is None else self._bad | bad
        on_cpu = loss.device.type == "cpu"
        if on_cpu or (trainer.global_step - self._since) >= self.gpu_interval:
            self._check(trainer, float(loss.detach().float().mean()) if on_cpu else None)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._check(trainer, None)

    def _check(self, trainer: pl.Trainer, value: float | None) -> None:
        bad, self._bad = self._bad, None
        since, self._since = self._since, trainer.global_step
        if bad is None or not bool(bad):
            return
        where = (
            f"training loss is {value} at epoch {trainer.current_epoch}, global step "
            f"{trainer.global_step}"
            if value is not None
            else f"training loss became non-finite between global steps {since} and "
            f"{trainer.global_step} (epoch {trainer.current_epoch})"
        )
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
        raise NonFiniteLossError(
            f"{where}; likely causes: a learning rate too high (now {lr:.3g}; lower "
            "optimizer.lr), no gradient clipping, or bad labels. The checkpoints written so far "
            "are kept"
        )


class Throughput(pl.Callback):
    """Logs ``train/images_per_s``, ``train/epoch_time_s`` (training batches only, validation
    excluded) and ``val/images_per_s`` each epoch, to the progress bar and every logger."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}
        self._images: dict[str, int] = {}
        self._val_seconds = 0.0

    @staticmethod
    def _count(module: pl.LightningModule, batch: Any) -> int:
        keys = getattr(module, "image_keys", ("image",))
        image = batch.get(keys[0]) if isinstance(batch, dict) else None
        return int(image.shape[0]) if isinstance(image, torch.Tensor) else 0

    def _begin(self, stage: str) -> None:
        self._start[stage], self._images[stage] = time.perf_counter(), 0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._begin("train")
        self._val_seconds = 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._images["train"] = self._images.get("train", 0) + self._count(module, batch)

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._begin("val")

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, *args) -> None:
        self._images["val"] = self._images.get("val", 0) + self._count(module, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start.get("val", time.perf_counter())
        self._val_seconds += seconds
        if not trainer.sanity_checking and self._images.get("val"):
            module.log("val/images_per_s", self._images["val"] / max(seconds, 1e-9), prog_bar=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if "train" not in self._start:
            return
        seconds = time.perf_counter() - self._start["train"] - self._val_seconds
        module.log("train/epoch_time_s", seconds)
        module.log("train/images_per_s", self._images["train"] / max(seconds, 1e-9), prog_bar=True)
