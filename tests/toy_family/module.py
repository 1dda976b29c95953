"""``ToyModule``: image classification with cross-entropy and accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from visionzoo.core.io import read_rgb
from visionzoo.core.module import VisionModule

EVAL_STAGES = ("val", "test")


class ToyModule(VisionModule):
    """Trains a registered toy classifier (``(B, C)`` logits) with cross-entropy; logs
    ``{val,test}/acc`` and ``{val,test}/loss``. ``loss`` is accepted for the CLI's sake and
    must be null: the toy family has no loss group."""

    def __init__(self, *, loss: dict[str, Any] | None = None, **base_kw: Any) -> None:
        if loss:
            raise ValueError("task=toy trains with cross-entropy; drop loss=...")
        super().__init__(**base_kw)
        meta = self.hparams.data_meta or {}
        self.class_names = meta.get("class_names") or [
            str(i) for i in range(self.model.num_classes)
        ]
        n = self.model.num_classes
        self.accuracy = nn.ModuleDict(
            {s: MulticlassAccuracy(n, average="micro") for s in EVAL_STAGES}
        )
        self.mean_loss = nn.ModuleDict({s: MeanMetric() for s in EVAL_STAGES})

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.model(batch["image"]), batch["label"])
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        logits = self.model(batch["image"])
        self.mean_loss[stage].update(F.cross_entropy(logits, batch["label"]), len(logits))
        self.accuracy[stage].update(logits.argmax(1), batch["label"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _epoch_end(self, stage: str) -> None:
        metrics = {"acc": self.accuracy[stage].compute(), "loss": self.mean_loss[stage].compute()}
        self.accuracy[stage].reset()
        self.mean_loss[stage].reset()
        self.log_metrics(stage, metrics)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    @torch.no_grad()
    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """One record per file: its predicted class and the class probabilities."""
        records = []
        for path in files:
            x = datamodule.eval_tf(read_rgb(path))[None].to(self.device)
            probs = self.model(x).softmax(1)[0]
            label = int(probs.argmax())
            records.append(
                {
                    "file": str(path),
                    "label": label,
                    "class_name": self.class_names[label],
                    "scores": {n: float(p) for n, p in zip(self.class_names, probs, strict=True)},
                }
            )
        return records
