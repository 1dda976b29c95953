"""``VisionModule``: the small base every family's LightningModule builds on."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch

from visionzoo.registry import create_model
from visionzoo.utils import call_spec


class VisionModule(pl.LightningModule):
    """Builds the model from its registry spec, the optimizer and scheduler from partial specs,
    logs metrics as ``{stage}/{metric}`` and tracks ``val/<metric>_best`` for the monitor.

    Every constructor argument is plain data, saved as hyper-parameters, so a checkpoint
    rebuilds the module with ``torch.load(..., weights_only=True)`` and nothing else.
    """

    def __init__(
        self,
        *,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str,
        monitor_mode: str = "max",
        data_meta: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        compile: bool = False,
        **task_kw: Any,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        model_kw = dict(model)
        self.model = create_model(model_kw.pop("name"), **model_kw)
        if compile:
            self.model.compile()
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.best: float | None = None

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
        wd = self.hparams.optimizer.get("weight_decay", 0.0)
        groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = call_spec({**self.hparams.optimizer, "weight_decay": 0.0}, groups)
        spec = self.hparams.scheduler
        if not spec:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(self.trainer.max_epochs or 1, 1)
        scheduler = call_spec(
            spec, optimizer, total_steps=total, steps_per_epoch=max(math.ceil(total / epochs), 1)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def log_metrics(self, stage: str, metrics: dict[str, Any], **kw: Any) -> None:
        """Log scalars as ``{stage}/{name}``; on validation also update ``<monitor>_best``."""
        scalars = {f"{stage}/{k}": float(v) for k, v in metrics.items()}
        # Values are already reduced across ranks (torchmetrics); syncing identical scalars is
        # cheap and keeps Lightning's epoch-level bookkeeping consistent under DDP.
        self.log_dict(scalars, sync_dist=True, **kw)
        if stage == "val" and self.monitor in scalars and not self.trainer.sanity_checking:
            value = scalars[self.monitor]
            better = max if self.monitor_mode == "max" else min
            if not math.isnan(value):
                self.best = value if self.best is None else better(self.best, value)
        if stage == "val" and self.best is not None:
            self.log(f"{self.monitor}_best", self.best, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["visionzoo"] = {"best": self.best, "version": 1}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best = checkpoint.get("visionzoo", {}).get("best")
