"""``AestheticsModule``: score distributions (NIMA), high/low decisions (RAPID, DMA-Net) or mean
score regression, with accuracy, SRCC/PLCC, EMD and standard-deviation correlation."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from visionzoo.aesthetics.formats import THRESHOLD
from visionzoo.aesthetics.losses import EMDLoss
from visionzoo.aesthetics.metrics import AestheticsMetrics, score_moments
from visionzoo.aesthetics.plots import class_histogram, contact_sheet, score_histogram
from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.module import VisionModule
from visionzoo.losses.ranking import pairwise_rank_loss

EVAL_STAGES = ("val", "test")


class AestheticsModule(VisionModule):
    """Trains a registered aesthetics model by its ``objective`` (a key of the model config):

    - ``distribution``: squared EMD (r = ``emd_r``) between the predicted and the vote
      distribution (NIMA); the predicted score is the distribution's mean;
    - ``binary``: binary cross-entropy on high (mean ≥ 5) vs low (the RAPID and DMA-Net
      papers' objective); the score is the high/low logit;
    - ``regression``: squared error of the predicted mean score plus ``rank_weight`` × the
      pairwise rank loss (``visionzoo.losses.ranking``, margin ``rank_margin``); high = a
      predicted mean ≥ 5. The configs' default for RAPID and DMA-Net: it keeps how far from
      5 each image is, which the high/low label drops (on the synthetic set at equal epochs it
      classifies better than ``binary``: README).

    ``loss`` is accepted for the CLI's sake and must be null (the objective picks the loss).
    ``plots`` writes a histogram of predicted vs true mean scores at each validation."""

    image_keys = ("image", "crops")

    def __init__(
        self,
        *,
        loss: dict[str, Any] | None = None,
        emd_r: int = 2,
        rank_weight: float = 1.0,
        rank_margin: float = 0.1,
        plots: bool = True,
        **base_kw: Any,
    ) -> None:
        if loss:
            raise ValueError("task=aesthetics picks its loss from model.objective; drop loss=...")
        super().__init__(**base_kw)
        self.objective = self.model.objective
        delta = (self.hparams.data or {}).get("delta", 0.0)
        if delta and self.objective != "binary":
            raise ValueError(
                f"data.delta={delta} drops ambiguous training images for binary models only; "
                f"model {self.hparams.model['name']!r} has objective={self.objective}: set "
                "data.delta=0 (or model.objective=binary)"
            )
        self.emd_loss = EMDLoss(r=emd_r)
        self.metrics = {s: AestheticsMetrics() for s in EVAL_STAGES}
        self.mean_loss = torch.nn.ModuleDict({s: MeanMetric() for s in EVAL_STAGES})

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if self.objective == "distribution" and datamodule is not None:
            if hasattr(datamodule, "has_votes") and not datamodule.has_votes():
                raise DataError(
                    "objective=distribution needs vote counts (AVA.txt, or a CSV with columns "
                    "image,c1..c10); for 'image,score' labels set model.objective=regression"
                )
        if getattr(self.model, "uses_crops", False) and datamodule is not None:
            if not datamodule.view_kw.get("num_crops"):
                raise DataError(
                    f"model {self.hparams.model['name']!r} reads crops: set data.num_crops ≥ 1"
                )
        super().setup(stage)

    # ------------------------------------------------------------------------------ steps
    def raw(self, batch: dict[str, Any]) -> torch.Tensor:
        """The model's output for a batch: (B, 10) logits or (B,)."""
        return self.model(batch["image"], batch.get("crops"))

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """``score`` (B,), ``high`` (B,) bool and, for distributions, ``dist`` (B, 10), ``std``."""
        if self.objective == "distribution":
            dist = out.softmax(1)
            mean, std = score_moments(dist)
            return {"score": mean, "high": mean >= THRESHOLD, "dist": dist, "std": std}
        cut = 0.0 if self.objective == "binary" else THRESHOLD
        return {"score": out, "high": out >= cut, "dist": None, "std": None}

    def loss(self, out: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The objective's loss of one batch (see the class docstring)."""
        if self.objective == "distribution":
            return self.emd_loss(out, batch["dist"])
        if self.objective == "binary":
            return F.binary_cross_entropy_with_logits(out, batch["high"])
        mean = batch["mean"]
        rank = pairwise_rank_loss(out, mean, self.hparams.rank_margin)
        return F.mse_loss(out, mean) + self.hparams.rank_weight * rank

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch failed to decode (data.skip_missing)
            return None
        loss = self.loss(self.raw(batch), batch)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["mean"]))
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Any] | None) -> None:
        if batch is None:
            return
        out = self.raw(batch)
        self.mean_loss[stage].update(self.loss(out, batch), len(out))
        pred = self.predictions(out)
        has_dist = pred["dist"] is not None and bool(batch["dist"].sum(1).gt(0).all())
        self.metrics[stage].update(
            batch["index"],
            pred["score"],
            pred["high"],
            batch["mean"],
            pred["dist"] if has_dist else None,
            batch["dist"] if has_dist else None,
        )

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _epoch_end(self, stage: str) -> None:
        metrics = self.metrics[stage].compute()
        metrics["loss"] = self.mean_loss[stage].compute()
        scores = self.metrics[stage].scores()
        self.metrics[stage].reset()
        self.mean_loss[stage].reset()
        self.log_metrics(stage, metrics)
        if stage == "val" and self.plots_due():
            self._write_plot(scores)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # ------------------------------------------------------------------------------ plots
    def on_fit_start(self) -> None:
        # trainer.log_dir broadcasts under DDP, so every rank must ask for it, here, together.
        log_dir = self.trainer.log_dir
        self._plot_dir = Path(log_dir) / "plots" if log_dir else None

    def _write_plot(self, scores: np.ndarray) -> None:
        folder = getattr(self, "_plot_dir", None)
        if self.trainer.sanity_checking or folder is None or not len(scores):
            return
        path = folder / f"val_scores_epoch{self.current_epoch:03d}.png"
        title = f"validation, epoch {self.current_epoch}"
        if self.objective == "binary":
            class_histogram(path, scores[:, 0] >= 0, scores[:, 1], title)
        else:
            score_histogram(path, scores[:, 0], scores[:, 1], title)

    # ---------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """Score every file and rank them, best first: writes ``ranking.csv`` (rank, file,
        score, std) and ``contact_sheet.png`` (thumbnails in rank order with their scores).
        ``score`` is the predicted mean score (1..10), or P(high) for binary models. Returns
        one record per file, in rank order."""
        records, thumbs = [], {}
        for path in files:
            image = read_rgb(path)
            views = datamodule.eval_tf.views(image, np.random.default_rng(0))
            batch = {k: v[None].to(self.device) for k, v in views.items()}
            pred = self.predictions(self.raw(batch))
            score = float(pred["score"][0])
            record = {"file": str(path), "score": score, "high": bool(pred["high"][0])}
            if self.objective == "binary":
                record["score"] = float(torch.sigmoid(pred["score"][0]))
            if pred["dist"] is not None:
                record["std"] = float(pred["std"][0])
                record["distribution"] = [float(p) for p in pred["dist"][0]]
            records.append(record)
            thumbs[str(path)] = image
        records.sort(key=lambda r: -r["score"])
        for rank, record in enumerate(records, start=1):
            record["rank"] = rank
        with (out_dir / "ranking.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["rank", "file", "score", "std"])
            for r in records:
                writer.writerow([r["rank"], r["file"], f"{r['score']:.4f}", r.get("std", "")])
        contact_sheet(
            out_dir / "contact_sheet.png",
            [thumbs[r["file"]] for r in records],
            [f"#{r['rank']}  {r['score']:.2f}" for r in records],
        )
        return records
