"""``DetectionModule``: trains a registered detector with the YOLO training recipe and scores
it with COCO mAP (pycocotools)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from visionzoo.core.ema import ModelEMA
from visionzoo.core.io import read_rgb
from visionzoo.core.module import VisionModule
from visionzoo.core.utils import atomic_write_bytes, call_spec
from visionzoo.detection import transforms as T
from visionzoo.detection.metrics import DetectionEvaluator

WARMUP_SHAPES = ("linear", "quadratic")
METRIC_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large", "mar_100")
METRIC_KEYS += ("precision", "recall", "f1")


def scale_predictions(
    preds: list[dict[str, torch.Tensor]], batch: dict[str, Any]
) -> list[dict[str, torch.Tensor]]:
    """Map boxes from letterboxed input pixels back to each original image, on the CPU."""
    out = []
    for p, (ratio, pad), size in zip(preds, batch["ratio_pad"], batch["orig_size"], strict=True):
        boxes = T.scale_boxes_back(p["boxes"].float().cpu().numpy(), ratio, pad, size)
        out.append(
            {
                "boxes": torch.from_numpy(np.asarray(boxes, dtype=np.float32)),
                "scores": p["scores"].float().cpu(),
                "labels": p["labels"].cpu(),
            }
        )
    return out


def unit_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 image batches (B, 3, H, W) as the float [0, 1] input every detector takes."""
    return images.float() / 255


def training_losses(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The detector's loss terms on one training batch (``"loss"`` is the one to backpropagate):
    the module's training step and the benchmark's plain loop both call it."""
    return model(unit_images(batch["image"]), batch["targets"])


def dataset_image_ids(datamodule: Any) -> dict[Path, int]:
    """Resolved image path → image id over the splits of ``datamodule`` that can be read."""
    from visionzoo.core.io import DataError

    ids: dict[Path, int] = {}
    for stage in ("train", "val", "test"):
        try:
            records = datamodule.source(stage).records
        except (DataError, FileNotFoundError):  # a split the dataset lacks, a moved root
            continue
        ids.update({Path(r.file).resolve(): r.image_id for r in records})
    return ids


class DetectionModule(VisionModule):
    """YOLO-style training loop on top of any detector that follows
    ``visionzoo.detection.models.common``:

    - parameter groups: biases, decayed weights, norm weights (no decay); weight decay scaled by
      ``batch × accumulate / nominal_batch_size``;
    - gradients accumulate to a nominal batch of ``nominal_batch_size`` images (ramped up during
      warm-up), clipped to ``grad_clip`` before each step;
    - warm-up over ``max(warmup_epochs × batches, warmup_min_iters)`` batches: biases start at
      ``warmup_bias_lr`` (``"auto"``: 0 under Adam / AdamW, as Ultralytics does, 0.1 otherwise),
      the other groups at 0, momentum at ``warmup_momentum`` (``"auto"``: 0.8 for SGD, Adam's
      beta1 not warmed up, as Ultralytics does); afterwards the
      learning rate follows the scheduler's ``kind`` (linear / cosine / constant) per epoch down
      to ``min_lr_ratio``, reached ``min_lr_epochs`` before the end and held there;
      ``warmup_shape="quadratic"`` is YOLOX's warm-up instead: every group's rate grows as
      ``lr · (i / n)²`` from 0 (bias rate and momentum not warmed separately);
    - an EMA of the weights is what validation, checkpoints' ``ema`` entry and predict use.
    """

    saves_predictions = True  # eval.py save_predictions=true: COCO results JSON

    def __init__(
        self,
        *,
        nominal_batch_size: int = 64,
        grad_clip: float | None = 10.0,
        warmup_min_iters: int = 100,
        warmup_bias_lr: float | str = 0.1,
        warmup_momentum: float | str = 0.8,
        warmup_shape: str = "linear",
        min_lr_epochs: int = 0,
        ema: dict[str, float] | None = None,
        autoanchor: bool = True,
        plots: bool = True,
        num_plot_images: int = 16,
        **base_kw: Any,
    ) -> None:
        super().__init__(**base_kw)
        if warmup_shape not in WARMUP_SHAPES:
            raise ValueError(
                f"task.warmup_shape={warmup_shape!r}; choose one of {', '.join(WARMUP_SHAPES)}"
            )
        if (
            isinstance(min_lr_epochs, bool)
            or not isinstance(min_lr_epochs, int)
            or min_lr_epochs < 0
        ):
            raise ValueError(
                f"task.min_lr_epochs={min_lr_epochs!r}; give a whole number of epochs ≥ 0"
            )
        self.automatic_optimization = False
        meta = self.hparams.data_meta or {}
        self.num_classes = self.model.num_classes
        self.class_names = meta.get("class_names") or [str(i) for i in range(self.num_classes)]
        self.category_ids = meta.get("category_ids") or list(range(1, self.num_classes + 1))
        self.image_size = int(meta.get("image_size", 640))
        self.ema = ModelEMA(self.model, **(ema or {})) if ema is not None else None
        self.evaluators: dict[str, DetectionEvaluator] = {}
        self.register_buffer("last_opt_step", torch.tensor(-1, dtype=torch.long), persistent=True)
        self._plot_batch: dict[str, Any] | None = None
        self._val_result: dict[str, Any] | None = None  # this epoch's, for results.csv

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def forward(self, images: torch.Tensor) -> Any:
        return self.eval_model(images)

    # ------------------------------------------------------------------------------ optimizer
    def _batch_size(self) -> int:
        dm = getattr(self.trainer, "datamodule", None)
        return int(getattr(dm, "batch_size", 16))

    def _accumulate_target(self) -> int:
        world = max(self.trainer.world_size, 1)
        return max(round(self.hparams.nominal_batch_size / (self._batch_size() * world)), 1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        biases, weights, norms = [], [], []
        # every trainable parameter of the task module, the network's first (the EMA copy is
        # frozen and so left out)
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                if name == "bias":
                    biases.append(p)
                elif isinstance(
                    module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm
                ):
                    norms.append(p)
                else:
                    weights.append(p)
        spec = dict(self.hparams.optimizer)
        scale = self._batch_size() * self._accumulate_target() * max(self.trainer.world_size, 1)
        wd = spec.pop("weight_decay", 0.0) * scale / self.hparams.nominal_batch_size
        groups = [
            {"params": biases, "weight_decay": 0.0},
            {"params": weights, "weight_decay": wd},
            {"params": norms, "weight_decay": 0.0},
        ]
        optimizer = call_spec({**spec, "weight_decay": 0.0}, groups)
        for g in optimizer.param_groups:
            g["initial_lr"] = g["lr"]
            g["initial_momentum"] = g["betas"][0] if "betas" in g else g.get("momentum", 0.0)
        return optimizer

    def _lr_factor(self, epoch: int) -> float:
        spec = self.hparams.scheduler or {}
        kind = spec.get("kind", "constant") if spec else "constant"
        final = spec.get("min_lr_ratio", 0.01)
        # the decay ends min_lr_epochs before the last epoch; those epochs stay at the floor
        span = max((self.trainer.max_epochs or 1) - self.hparams.min_lr_epochs, 1)
        t = min(epoch / span, 1.0)
        if kind == "linear":
            return (1 - t) * (1 - final) + final
        if kind == "cosine":
            return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    def _warmup_bias_lr(self) -> float:
        """The learning rate biases start warm-up from. ``auto``: 0 for the Adam family (a high
        bias rate under Adam's normalised steps moves BatchNorm shifts by O(1) in a few steps),
        YOLO's 0.1 for SGD."""
        value = self.hparams.warmup_bias_lr
        if value != "auto":
            return float(value)
        return 0.0 if self._adam_family() else 0.1

    def _adam_family(self) -> bool:
        target = str((self.hparams.optimizer or {}).get("_target_", ""))
        return target.rsplit(".", 1)[-1].lower().startswith("adam")

    def _warmup_momentum(self) -> float | None:
        """Momentum (SGD) or beta1 (Adam) at the start of warm-up; ``None``: not warmed up.
        ``auto``: YOLO's 0.8 for SGD; Adam's beta1 stays put, as in YOLOv5 and Ultralytics
        (their warm-up sets a ``momentum`` key that Adam's parameter groups lack)."""
        value = self.hparams.warmup_momentum
        if value != "auto":
            return float(value)
        return None if self._adam_family() else 0.8

    def _set_lr(self, optimizer: torch.optim.Optimizer, ni: int, nw: int) -> int:
        """Learning rate and momentum of each group for batch ``ni``; returns accumulate."""
        factor = self._lr_factor(self.current_epoch)
        target = self._accumulate_target()
        warm = ni < nw
        for j, g in enumerate(optimizer.param_groups):
            lr = g["initial_lr"] * factor
            momentum = g["initial_momentum"]
            if warm and self.hparams.warmup_shape == "quadratic":
                lr *= (ni / nw) ** 2
            elif warm:
                start = self._warmup_bias_lr() if j == 0 else 0.0
                lr = float(np.interp(ni, [0, nw], [start, lr]))
                start_momentum = self._warmup_momentum()
                if start_momentum is not None:
                    momentum = float(np.interp(ni, [0, nw], [start_momentum, momentum]))
            g["lr"] = lr
            if "betas" in g:
                g["betas"] = (momentum, g["betas"][1])
            elif "momentum" in g:
                g["momentum"] = momentum
        if warm:
            return max(1, int(np.interp(ni, [0, nw], [1, target]).round()))
        return target

    # ------------------------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            # a new fit counts its accumulation from its own first batch; a resumed one gets
            # the saved value back, since checkpoints are restored after this hook
            self.last_opt_step.fill_(-1)

    def on_train_epoch_start(self) -> None:
        set_epoch = getattr(self.model, "set_epoch", None)
        if set_epoch is not None:
            close = (self.hparams.data or {}).get("augment", {}) or {}
            close = close.get("close_mosaic", 10)
            max_epochs = self.trainer.max_epochs or 1
            set_epoch(self.current_epoch, max_epochs, self.current_epoch >= max_epochs - close)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        nb = self.trainer.num_training_batches
        ni = batch_idx + nb * self.current_epoch
        warmup_epochs = (self.hparams.scheduler or {}).get("warmup_epochs", 3)
        nw = max(round(warmup_epochs * nb), self.hparams.warmup_min_iters)
        accumulate = self._set_lr(optimizer, ni, nw)
        losses = training_losses(self.model, batch)
        self.manual_backward(losses["loss"])
        # Also step at the end of an epoch, so checkpoints never hold half-accumulated gradients.
        if ni - int(self.last_opt_step) >= accumulate or batch_idx == nb - 1:
            if self.hparams.grad_clip:
                self.clip_gradients(
                    optimizer,
                    gradient_clip_val=self.hparams.grad_clip,
                    gradient_clip_algorithm="norm",
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            self.last_opt_step.fill_(ni)
        bs = batch["image"].shape[0]
        logged = {f"train/{k}": v.detach().float() for k, v in losses.items() if k != "loss"}
        # YOLOv5 returns the batch sum (its gradient scale); log the per-image value.
        per_image = bs if getattr(self.model, "loss_sums_batch", False) else 1
        logged["train/loss"] = losses["loss"].detach().float() / per_image
        self.log_dict(logged, prog_bar=True, batch_size=bs, on_step=True, on_epoch=True)
        self.log("train/lr", optimizer.param_groups[1]["lr"], batch_size=bs)
        return losses["loss"].detach()

    # ----------------------------------------------------------------------------- evaluation
    def _evaluator(self, stage: str) -> DetectionEvaluator:
        if stage not in self.evaluators:
            source = self.trainer.datamodule.source(stage)
            self.evaluators[stage] = DetectionEvaluator(
                source.records, self.class_names, self.category_ids
            )
        return self.evaluators[stage]

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        images = unit_images(batch["image"])
        preds = self.eval_model(images)
        self._evaluator(stage).update(batch["image_id"], scale_predictions(preds, batch))
        if stage == "val" and self._plot_batch is None:
            keep = slice(0, self.hparams.num_plot_images)
            self._plot_batch = {
                "image": batch["image"][keep].cpu(),
                "preds": [{k: v.cpu() for k, v in p.items()} for p in preds[keep]],
            }

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _eval_epoch_end(self, stage: str) -> dict[str, Any]:
        evaluator = self._evaluator(stage)
        result = evaluator.compute()
        evaluator.reset()
        if self.predictions_file is not None and self.trainer.is_global_zero:
            # the detections just scored, in the dataset's image and category ids (xywh)
            atomic_write_bytes(self.predictions_file, json.dumps(evaluator.scored).encode())
        metrics = {k: float(result[k]) for k in METRIC_KEYS if k in result}
        self.log_metrics(stage, metrics)
        return result

    def on_validation_epoch_start(self) -> None:
        self._plot_batch = None
        # DDP keeps parameters equal across ranks, but each rank's EMA also averages its own
        # BatchNorm statistics: evaluate (and checkpoint) rank 0's average everywhere.
        if self.ema is not None and self.trainer.world_size > 1 and dist.is_initialized():
            for tensor in self.ema.state_dict().values():
                dist.broadcast(tensor, src=0)

    def on_validation_epoch_end(self) -> None:
        result = self._eval_epoch_end("val")
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        self._val_result = result  # its results.csv row is written once the epoch's train
        if self.plots_due():  # losses are averaged, in on_train_epoch_end
            self._write_plots("val", result)

    def on_train_epoch_end(self) -> None:
        # Validation runs inside the training epoch, before Lightning averages the epoch's
        # training losses: writing the row there would pair them with the previous epoch.
        result, self._val_result = self._val_result, None
        if result is not None and self.trainer.is_global_zero:
            self._write_results_csv(result)

    def on_test_epoch_end(self) -> None:
        result = self._eval_epoch_end("test")
        if self.trainer.is_global_zero and getattr(self, "_plot_dir", None):
            self._write_plots("test", result)
            per_class = {
                n: {"ap": float(a), "ap50": float(b)}
                for n, a, b in zip(
                    self.class_names, result["ap_per_class"], result["ap50_per_class"], strict=True
                )
            }
            (self._plot_dir.parent / "test_per_class.json").write_text(
                json.dumps(per_class, indent=1)
            )

    # -------------------------------------------------------------------------------- outputs
    def on_fit_start(self) -> None:
        # trainer.log_dir broadcasts under DDP, so every rank asks for it here, together.
        log_dir = self.trainer.log_dir
        self._plot_dir = Path(log_dir) / "plots" if log_dir else None
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "source"):  # fit on bare loaders (benchmarks): no labels
            return
        if self.hparams.autoanchor and hasattr(self.model, "anchors"):
            from visionzoo.detection.models.autoanchor import check_anchors

            check_anchors(self.model, datamodule.source("train"), self.image_size)
            if self.ema is not None:
                self.ema.module.anchors.copy_(self.model.anchors)
        if self.hparams.plots and self.trainer.is_global_zero and self._plot_dir is not None:
            from visionzoo.detection.plots import plot_label_distribution

            src = datamodule.source("train")
            self._plot_dir.mkdir(parents=True, exist_ok=True)
            plot_label_distribution(src.records, self.class_names, self._plot_dir / "labels.png")

    def on_test_start(self) -> None:
        log_dir = self.trainer.log_dir
        self._plot_dir = Path(log_dir) / "plots" if log_dir else None

    def _write_results_csv(self, result: dict[str, Any]) -> None:
        folder = getattr(self, "_plot_dir", None)
        if folder is None:
            return
        metrics = self.trainer.callback_metrics
        row: dict[str, Any] = {"epoch": self.current_epoch}
        for key, value in sorted(metrics.items()):
            if key.startswith("train/") and (key.endswith("_epoch") or key == "train/lr"):
                row[key.removesuffix("_epoch")] = float(value)
        row.update({f"val/{k}": float(result[k]) for k in METRIC_KEYS if k in result})
        path = folder.parent / "results.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = list(csv.DictReader(path.open())) if path.is_file() else []
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))  # union, first-seen order
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def _write_plots(self, stage: str, result: dict[str, Any]) -> None:
        folder = getattr(self, "_plot_dir", None)
        if not self.hparams.plots or folder is None:
            return
        from visionzoo.detection.plots import (
            plot_confusion_matrix,
            plot_pr_curves,
            save_prediction_grid,
        )

        folder.mkdir(parents=True, exist_ok=True)
        evaluator = self._evaluator(stage)
        plot_pr_curves(evaluator.pr_curves(), self.class_names, folder / f"{stage}_pr_curve.png")
        plot_confusion_matrix(
            evaluator.confusion_matrix(), self.class_names, folder / f"{stage}_confusion_matrix.png"
        )
        if self._plot_batch is not None:
            save_prediction_grid(
                self._plot_batch["image"],
                self._plot_batch["preds"],
                self.class_names,
                folder / f"{stage}_predictions.png",
            )

    # -------------------------------------------------------------------------------- predict
    def predict_input(
        self, image: np.ndarray, stride: int
    ) -> tuple[torch.Tensor, tuple[float, tuple[float, float]]]:
        """One RGB uint8 image (H, W, 3) → the uint8 (1, 3, h, w) input evaluation gives it in
        a batch of its own (``data.eval_batch_size=1``): long side ``image_size`` (area filter
        when shrinking), letterboxed into its rectangular shape with half a stride of padding;
        plus ``(ratio, (pad_left, pad_top))`` to map boxes back."""
        h0, w0 = image.shape[:2]
        interp = T.eval_interpolation(image.shape, self.image_size)
        empty = np.zeros((0, 4), np.float32)
        resized, _, scale = T.resize_long_side(image, empty, self.image_size, interp)
        shape = T.rect_shape(h0 / w0, h0 / w0, self.image_size, stride)
        boxed, _, (ratio, pad) = T.letterbox(resized, empty, shape, stride=stride, scaleup=False)
        x = torch.from_numpy(np.ascontiguousarray(boxed.transpose(2, 0, 1)))[None]
        return x, (scale * ratio, pad)

    @torch.no_grad()
    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """Detect objects in each file; draw them into ``<stem>_pred.jpg`` and return COCO-format
        results: ``image_id`` is the image's id in the checkpoint's dataset when the file belongs
        to it (so ``COCO.loadRes`` scores them against its annotations), else the file's
        position; ``file_name`` names the file."""
        from PIL import Image

        from visionzoo.detection.plots import draw_detections

        model = self.eval_model.eval()
        stride = int(getattr(model, "stride", 32))
        known = dataset_image_ids(datamodule)
        results: list[dict] = []
        for position, path in enumerate(files):
            image_id = known.get(Path(path).resolve(), position)
            image = read_rgb(path)
            h0, w0 = image.shape[:2]
            x, ratio_pad = self.predict_input(image, stride)
            pred = model(unit_images(x.to(self.device)))[0]
            batch = {"ratio_pad": [ratio_pad], "orig_size": [(h0, w0)]}
            pred = scale_predictions([pred], batch)[0]
            drawn = draw_detections(
                torch.from_numpy(image.transpose(2, 0, 1).copy()),
                pred["boxes"][pred["scores"] > 0.25],
                pred["labels"][pred["scores"] > 0.25],
                pred["scores"][pred["scores"] > 0.25],
                self.class_names,
            )
            Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(
                out_dir / f"{Path(path).stem}_pred.jpg"
            )
            for box, score, label in zip(
                pred["boxes"].tolist(),
                pred["scores"].tolist(),
                pred["labels"].tolist(),
                strict=True,
            ):
                x1, y1, x2, y2 = box
                results.append(
                    {
                        "image_id": image_id,
                        "file_name": str(path),
                        "category_id": int(self.category_ids[label]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score,
                    }
                )
        return results
