"""``SegmentationModule``: per-pixel classification with region losses and mIoU/Dice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from visionzoo.core.io import read_rgb
from visionzoo.core.module import VisionModule
from visionzoo.core.plots import bar_chart, overlay_mask
from visionzoo.losses.classification import class_weights_from_masks
from visionzoo.losses.combined import build_loss
from visionzoo.segmentation.inference import logits_at_labels, predict_logits, resize_logits
from visionzoo.segmentation.metrics import SegmentationMetrics
from visionzoo.segmentation.plots import save_sample_grid
from visionzoo.segmentation.transforms import IMAGENET_MEAN, IMAGENET_STD


def training_loss(model: nn.Module, loss_fn: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The loss of one training batch, ``loss_fn(model(image), mask)`` (logits (B, C, H, W),
    mask (B, H, W)): the module's training step and the benchmark's plain loop both call it."""
    return loss_fn(model(batch["image"]), batch["mask"])


MEDIAN_FREQUENCY = "median_frequency"  # loss.weight value: median-frequency class weights


class SegmentationModule(VisionModule):
    """Trains a registered segmentation model (logits out) with a registered loss.

    ``inference`` selects whole-image or sliding-window evaluation and flip TTA; ``plots``
    writes a per-class IoU bar chart and sample predictions at each validation."""

    def __init__(
        self,
        *,
        loss: dict[str, Any] | str,
        inference: dict[str, Any] | None = None,
        plots: bool = True,
        num_plot_samples: int = 4,
        **base_kw: Any,
    ) -> None:
        super().__init__(**base_kw)
        meta = self.hparams.data_meta or {}
        self.num_classes = self.model.num_classes
        self.class_names = meta.get("class_names") or [str(i) for i in range(self.num_classes)]
        self.ignore_index = meta.get("ignore_index", 255)
        # weight=median_frequency: computed from the training masks once a data module is
        # attached (setup), then stored in the hyper-parameters, so checkpoints rebuild it
        deferred = isinstance(loss, dict) and loss.get("weight") == MEDIAN_FREQUENCY
        self.loss_fn = None if deferred else build_loss(loss)
        self.inference = dict(inference or {})
        self.metrics = nn.ModuleDict(
            {s: SegmentationMetrics(self.num_classes, self.ignore_index) for s in ("val", "test")}
        )
        self._plot_batch: dict[str, Any] | None = None

    def setup(self, stage: str) -> None:
        if self.loss_fn is None:
            datamodule = self.trainer.datamodule
            masks = (datamodule.decoder(p) for p in datamodule.mask_paths("train"))
            weight = class_weights_from_masks(masks, self.num_classes, self.ignore_index)
            self.hparams.loss["weight"] = weight
            self.loss_fn = build_loss(self.hparams.loss)
        super().setup(stage)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, H, W) with the configured inference mode and TTA."""
        return predict_logits(self.model, images, num_classes=self.num_classes, **self.inference)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = training_loss(self.model, self.loss_fn, batch)
        terms = {k: v for k, v in getattr(self.loss_fn, "last_terms", {}).items()}
        self.log_dict(
            {"train/loss": loss.detach(), **{f"train/{k}": v for k, v in terms.items()}},
            prog_bar=True,
            batch_size=batch["image"].shape[0],
        )
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Any], batch_idx: int) -> None:
        logits = logits_at_labels(
            self.predict_logits(batch["image"]), batch["mask"], batch.get("mask_size")
        )
        loss = self.loss_fn(logits, batch["mask"])
        self.log(f"{stage}/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)
        self.metrics[stage].update(logits.argmax(1), batch["mask"])
        if batch_idx == 0 and stage == "val":
            self._plot_batch = {
                "image": batch["image"][:4].cpu(),
                "mask": batch["mask"][:4].cpu(),
                "pred": logits[:4].argmax(1).cpu(),
            }

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch, batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch, batch_idx)

    def _epoch_end(self, stage: str) -> None:
        out = self.metrics[stage].compute()
        self.metrics[stage].reset()
        scalars = {k: v for k, v in out.items() if v.ndim == 0}
        for name, value in zip(self.class_names, out["iou_per_class"], strict=True):
            scalars[f"iou_{name}"] = value
        for name, value in zip(self.class_names, out["dice_per_class"], strict=True):
            scalars[f"dice_{name}"] = value
        self.log_metrics(stage, scalars)
        if stage == "val" and self.plots_due():
            self._write_plots(out["iou_per_class"].tolist())

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """Predict image files in batches of ``data.eval_batch_size`` with the data module's
        evaluation transform; per file write ``<stem>_mask.png`` (class ids, at the image's
        size) and ``<stem>_overlay.jpg`` (classes coloured over the image); return one
        JSON-able record per file."""
        step = max(int(getattr(datamodule, "eval_batch_size", 1) or 1), 1)
        records: list[dict] = []
        for i in range(0, len(files), step):
            records += self.predict_batch(files[i : i + step], out_dir, datamodule.eval_tf)
        return records

    @torch.no_grad()
    def predict_batch(self, paths: list[Path], out_dir: Path, transform: Any) -> list[dict]:
        """One forward pass for images whose transformed sizes agree (one pass per size
        otherwise); logits go back to each image's own size before the arg-max."""
        images = [read_rgb(p) for p in paths]
        inputs = [transform(image=img)["image"] for img in images]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for k, x in enumerate(inputs):
            by_size.setdefault(tuple(x.shape), []).append(k)
        logits: dict[int, torch.Tensor] = {}
        for ks in by_size.values():
            out = self.predict_logits(torch.stack([inputs[k] for k in ks]).to(self.device))
            logits.update({k: out[j : j + 1] for j, k in enumerate(ks)})
        return [
            self._write_prediction(p, img, logits[k], out_dir)
            for k, (p, img) in enumerate(zip(paths, images, strict=True))
        ]

    def _write_prediction(
        self, path: Path, image: np.ndarray, logits: torch.Tensor, out_dir: Path
    ) -> dict[str, Any]:
        probs = resize_logits(logits, image.shape[:2]).softmax(1)[0]
        conf, mask = probs.max(0)
        mask_np = mask.cpu().numpy().astype(np.uint8)
        stem = Path(path).stem
        mask_file, overlay_file = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.jpg"
        # the class-id mask stays lossless; fast zlib level (PNG encoding dominated predict)
        Image.fromarray(mask_np).save(mask_file, compress_level=1)
        Image.fromarray(overlay_mask(image, mask_np)).save(overlay_file, quality=90)
        counts = np.bincount(mask_np.ravel(), minlength=self.num_classes) / mask_np.size
        return {
            "file": str(path),
            "mask": str(mask_file),
            "overlay": str(overlay_file),
            "class_fraction": {n: float(c) for n, c in zip(self.class_names, counts, strict=True)},
            "mean_confidence": float(conf.mean()),
        }

    def on_fit_start(self) -> None:
        # trainer.log_dir broadcasts under DDP, so every rank must ask for it, here, together.
        log_dir = self.trainer.log_dir
        self._plot_dir = Path(log_dir) / "plots" if log_dir else None

    def _write_plots(self, iou: list[float]) -> None:
        folder = getattr(self, "_plot_dir", None)
        if self.trainer.sanity_checking or folder is None:
            return
        epoch = self.current_epoch
        bar_chart(folder / f"val_iou_epoch{epoch:03d}.png", self.class_names, iou, "val IoU")
        if self._plot_batch is None:
            return
        b = self._plot_batch
        save_sample_grid(
            folder / f"val_samples_epoch{epoch:03d}.png",
            denormalize(b["image"]),  # the network's input size; masks are resized to it
            list(b["mask"].numpy()),
            list(b["pred"].numpy()),
            self.class_names,
            self.ignore_index,
        )


def denormalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> list[np.ndarray]:
    """Normalised (B, 3, H, W) tensors back to uint8 RGB arrays for display."""
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return [((x * s + m).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy() for x in images]
