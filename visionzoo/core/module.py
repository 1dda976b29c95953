"""``VisionModule``: the small base every family's LightningModule builds on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from visionzoo.core.utils import call_spec, trains_on_cuda
from visionzoo.registry import create_model

# Keys of a model spec that say how the network runs, not what it is; never passed to the factory.
RUNTIME_KEYS = ("compile", "channels_last")
CHANNELS_LAST_CHOICES = (True, False, "auto")


def split_model_spec(spec: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(name, factory kwargs, runtime options)`` of a ``model`` config."""
    kwargs = dict(spec)
    name = kwargs.pop("name")
    runtime = {k: kwargs.pop(k) for k in RUNTIME_KEYS if k in kwargs}
    return name, kwargs, runtime


def resolve_channels_last(setting: bool | str, model: torch.nn.Module, on_cuda: bool) -> bool:
    """``model.channels_last`` as a yes/no: ``auto`` means a convolutional network on CUDA."""
    if setting != "auto":
        return bool(setting)
    return on_cuda and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


class VisionModule(pl.LightningModule):
    """Builds the model from its registry spec, the optimizer and scheduler from partial specs,
    logs metrics as ``{stage}/{metric}`` and tracks ``val/<metric>_best`` for the monitor.

    Every constructor argument is plain data, saved as hyper-parameters, so a checkpoint
    rebuilds the module with ``torch.load(..., weights_only=True)`` and nothing else.

    Two runtime options ride in the model spec and are applied when a trainer sets the module
    up (``setup``), after sub-classes have built everything else (an EMA copy, say):
    ``model.channels_last`` (``auto``: on for convolutional networks trained on a CUDA device)
    and ``model.compile`` (``torch.compile`` of the network's forward; opt-in).
    """

    # Batch keys holding (B, C, H, W) image tensors; families with several images per sample
    # (reference + distorted, anchor / positive / negative) list each of them.
    image_keys: tuple[str, ...] = ("image",)
    # eval.py save_predictions=true: families that can write their evaluated predictions set
    # ``saves_predictions``; eval then sets ``predictions_file`` before it runs.
    saves_predictions: bool = False
    predictions_file: Path | None = None

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
        plot_every: int = 1,
        **task_kw: Any,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not isinstance(plot_every, int) or isinstance(plot_every, bool) or plot_every < 1:
            raise ValueError(
                f"task.plot_every={plot_every!r} must be a whole number ≥ 1 (draw the validation "
                "figures every N validation epochs; the final epoch always draws them)"
            )
        self.plot_every = plot_every
        name, model_kw, runtime = split_model_spec(model)
        self.model = create_model(name, **model_kw)
        # Options a weights file fixed (an imported checkpoint's size, anchors...) replace the
        # configured ones in what checkpoints record, so that they rebuild without the file.
        update = getattr(self.model, "spec_update", None)
        if update:
            self.hparams["model"] = {**dict(self.hparams["model"]), **update}
        self.compile_model = bool(runtime.get("compile", False))
        self.channels_last = runtime.get("channels_last", "auto")
        if self.channels_last not in CHANNELS_LAST_CHOICES:
            raise ValueError(
                f"model.channels_last={self.channels_last!r}; choose true, false or auto"
            )
        self._runtime_applied = False
        self._channels_last_on = False  # resolved in setup, once a trainer says the device
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.best: float | None = None

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    # ----------------------------------------------------------------------- runtime options
    def uses_channels_last(self) -> bool:
        return resolve_channels_last(self.channels_last, self.model, trains_on_cuda(self._trainer))

    def setup(self, stage: str) -> None:
        """Apply ``model.channels_last`` and ``model.compile`` once, before the first step."""
        if self._runtime_applied:
            return
        self._runtime_applied = True
        self._channels_last_on = self.uses_channels_last()
        if self._channels_last_on:
            # every 4-D parameter and buffer of the module (EMA copies included); the layout
            # survives the move to the device, and checkpoint loading copies into it
            self.to(memory_format=torch.channels_last)
        if self.compile_model:
            self.model.compile()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Channels-last image batches: every 4-D tensor under one of ``image_keys``."""
        if self._channels_last_on and isinstance(batch, dict):
            for key in self.image_keys:
                image = batch.get(key)
                if isinstance(image, torch.Tensor) and image.ndim == 4:
                    batch[key] = image.contiguous(memory_format=torch.channels_last)
        return batch

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        own = self.extra_param_groups()
        taken = {id(p) for g in own for p in g["params"]}
        # Every trainable parameter of the task module, not only the network's: margin heads,
        # class centres and learnable loss weights held by the module train too. The network
        # is registered first, so its parameters lead the groups.
        for p in self.parameters():
            if p.requires_grad and id(p) not in taken:
                (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
        wd = self.hparams.optimizer.get("weight_decay", 0.0)
        groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
        groups += own
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

    def extra_param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups with their own settings (e.g. class centres with their own learning
        rate); their parameters are left out of the default groups. None by default."""
        return []

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

    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """``predict.py``: write the family's outputs for ``files`` into ``out_dir`` and return
        one JSON-able record per prediction (families with ``Family.predict`` implement it)."""
        raise NotImplementedError(f"{type(self).__name__} does not predict files")

    def plots_due(self) -> bool:
        """Whether this validation draws its figures: ``task.plots`` on, rank 0, not the sanity
        check, and every ``task.plot_every``-th epoch (counting from 1) or the final epoch."""
        trainer = self.trainer
        if not self.hparams.get("plots", True) or trainer.sanity_checking:
            return False
        if not trainer.is_global_zero:
            return False
        epoch = self.current_epoch + 1
        final = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return final or epoch % self.plot_every == 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["visionzoo"] = {"best": self.best, "version": 1}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best = checkpoint.get("visionzoo", {}).get("best")
