"""``IQAModule``: trains learned quality regressors (MetaIQA with its meta-learning phase,
CenseoQoE) and evaluates any quality model, learned or classical, by SRCC / PLCC / KRCC / RMSE
over the whole dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torchmetrics import MeanMetric

from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.module import VisionModule
from visionzoo.iqa.inference import (
    VIDEO_SUFFIXES,
    pair_references,
    read_video_frames,
    write_scores_csv,
)
from visionzoo.iqa.plots import score_scatter
from visionzoo.losses.ranking import pairwise_rank_loss
from visionzoo.metrics.correlation import ScoreCorrelation
from visionzoo.registry import model_info

EVAL_STAGES = ("val", "test")
LOSS_TERMS = ("mae", "mse", "rank")
META_DEFAULTS = {"epochs": 0, "inner_lr": 0.01, "inner_steps": 1, "support": 8, "query": 8}


class IQAModule(VisionModule):
    """Quality models ``model(image, reference=None) → (B,)`` on batches of ``IQADataset``.

    **Learned models** regress the standardised label ``(mos − mean) / std`` (training-split
    statistics from ``data_meta``, kept in the checkpoint) with ``loss_weights`` of ``mae``,
    ``mse`` and ``rank`` (the pairwise rank loss, ``visionzoo.losses.ranking``, margin
    ``rank_margin`` in standardised units); ``null`` takes the model's own recipe (CenseoQoE:
    MAE + rank; MetaIQA: squared error). Models with ``meta_learning`` (MetaIQA) spend the first
    ``meta.epochs`` epochs of ``trainer.max_epochs`` meta-training: each batch is ``meta.tasks``
    distortion-type tasks of ``support`` + ``query`` images; per task ``inner_steps`` SGD steps
    (``inner_lr``) on the support set give fast weights whose query-set loss gradient updates
    the model (first-order MAML, Finn et al. 2017, as MetaIQA's released code does in effect);
    the remaining epochs fine-tune on the whole training set.

    **Metrics** are direction-aligned: scores of lower-is-better models (NIQE, BRISQUE) and
    labels with ``label_higher_is_better=false`` (a DMOS) are negated first, so ``srcc``,
    ``plcc``, ``krcc`` and ``plcc_logistic`` (after VQEG's 4-parameter logistic) are positive
    for a model that agrees with people. That equals the absolute values pyiqa reports, except
    that a model ranking the wrong way stays negative instead of being hidden. ``rmse`` is in
    label units for learned models (meaningless across scales for classical ones). Every metric
    is over the whole split on every rank (``ScoreCorrelation``). ``plots`` writes a scatter of
    predicted score vs MOS with the fitted logistic at each validation.

    ``loss`` is accepted for the CLI's sake and must be null."""

    image_keys = ("image", "reference")

    def __init__(
        self,
        *,
        loss: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        rank_margin: float = 0.0,
        meta: dict[str, Any] | None = None,
        plots: bool = True,
        **base_kw: Any,
    ) -> None:
        if loss:
            raise ValueError("task=iqa picks its loss with task.loss_weights; drop loss=...")
        super().__init__(**base_kw)
        # Correlations are better high whatever the model's direction (they are aligned).
        if base_kw["monitor"].split("/")[-1] in ("srcc", "plcc", "krcc", "plcc_logistic"):
            self.monitor_mode = "max"
        self.trainable = model_info(self.hparams.model["name"]).trainable
        weights = loss_weights or getattr(self.model, "default_loss", {"mae": 1.0})
        unknown = set(weights) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(
                f"task.loss_weights has {sorted(unknown)}; terms are {', '.join(LOSS_TERMS)}"
            )
        self.loss_weights = {k: float(v) for k, v in weights.items()}
        self.meta = {**META_DEFAULTS, "tasks": 2, **(meta or {})}
        meta_data = self.hparams.data_meta or {}
        self.mos_mean = float(meta_data.get("mos_mean", 0.0))
        self.mos_std = float(meta_data.get("mos_std", 1.0))
        self.label_sign = 1.0 if meta_data.get("label_higher_is_better", True) else -1.0
        self.score_sign = 1.0 if getattr(self.model, "higher_is_better", True) else -1.0
        self.metrics = {s: ScoreCorrelation(logistic=True) for s in EVAL_STAGES}
        self.mean_loss = torch.nn.ModuleDict({s: MeanMetric() for s in EVAL_STAGES})

    @property
    def meta_epochs(self) -> int:
        """Epochs of meta-training before fine-tuning (0 for models that do not meta-learn)."""
        return int(self.meta["epochs"]) if getattr(self.model, "meta_learning", False) else 0

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        name = self.hparams.model["name"]
        if stage == "fit" and not self.trainable:
            raise ValueError(
                f"model {name!r} has no learnt weights; score a dataset with "
                f"`python eval.py task=iqa model={name}` instead of train.py"
            )
        if getattr(self.model, "needs_reference", False) and not (self.hparams.data_meta or {}).get(
            "has_reference", True
        ):
            raise DataError(
                f"model {name!r} is full-reference but the dataset has no reference images; "
                "use a no-reference model (niqe, brisque, metaiqa, censeo model.mode=nr)"
            )
        if stage == "fit" and self.meta_epochs and datamodule is not None:
            datamodule.use_episodes(
                meta_epochs=self.meta_epochs,
                support=int(self.meta["support"]),
                query=int(self.meta["query"]),
                tasks=int(self.meta["tasks"]),
            )
        super().setup(stage)

    # ------------------------------------------------------------------------------ steps
    def raw(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """The model's output (B,): standardised for learned models, the metric otherwise."""
        needs = getattr(self.model, "needs_reference", False)
        return self.model(image, reference if needs else None)

    def to_label_units(self, out: torch.Tensor) -> torch.Tensor:
        """A learned model's standardised output in the label's units (metrics unchanged)."""
        return out * self.mos_std + self.mos_mean if self.trainable else out

    def regression_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``loss_weights``-weighted MAE, squared error and pairwise rank loss; (B,) × 2."""
        w, total = self.loss_weights, out.new_zeros(())
        if w.get("mae"):
            total = total + w["mae"] * F.l1_loss(out, target)
        if w.get("mse"):
            total = total + w["mse"] * F.mse_loss(out, target)
        if w.get("rank"):
            total = total + w["rank"] * pairwise_rank_loss(out, target, self.hparams.rank_margin)
        return total

    def standardised(self, mos: torch.Tensor) -> torch.Tensor:
        return (mos - self.mos_mean) / self.mos_std

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        target = self.standardised(batch["mos"])
        if self.current_epoch < self.meta_epochs:
            loss, query_loss = self.meta_step(batch["image"], batch.get("reference"), target)
            self.log("train/loss", query_loss, prog_bar=True, batch_size=len(target))
            return loss
        loss = self.regression_loss(self.raw(batch["image"], batch.get("reference")), target)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(target))
        return loss

    def meta_step(
        self, image: torch.Tensor, reference: torch.Tensor | None, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """First-order MAML over the tasks of one episode batch (see the class docstring).

        Returns ``(surrogate, mean query loss)``: the surrogate ``Σ_p ⟨p, g_p⟩`` has the
        meta-gradient ``g`` (mean over tasks of ∇ query loss at the fast weights) as its
        gradient, so Lightning's optimizer step, clipping and DDP apply to it unchanged."""
        support, block = int(self.meta["support"]), int(self.meta["support"] + self.meta["query"])
        if len(target) % block:
            raise ValueError(f"episode batch of {len(target)} is not whole tasks of {block}")
        needs = getattr(self.model, "needs_reference", False)
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        meta_grads = {n: torch.zeros_like(p) for n, p in params.items()}
        query_losses = []
        tasks = len(target) // block

        def loss_at(weights: dict[str, torch.Tensor], part: slice) -> torch.Tensor:
            ref = reference[part] if needs and reference is not None else None
            out = functional_call(self.model, (weights, buffers), (image[part], ref))
            return self.regression_loss(out, target[part])

        for k in range(tasks):
            s_part = slice(k * block, k * block + support)
            q_part = slice(k * block + support, (k + 1) * block)
            fast = {n: p.detach().requires_grad_() for n, p in params.items()}
            for _ in range(int(self.meta["inner_steps"])):
                grads = torch.autograd.grad(loss_at(fast, s_part), list(fast.values()))
                fast = {
                    n: (w - self.meta["inner_lr"] * g).detach().requires_grad_()
                    for (n, w), g in zip(fast.items(), grads, strict=True)
                }
            query = loss_at(fast, q_part)
            grads = torch.autograd.grad(query, list(fast.values()))
            for n, g in zip(fast, grads, strict=True):
                meta_grads[n] += g / tasks
            query_losses.append(query.detach())
        surrogate = sum((p * meta_grads[n]).sum() for n, p in params.items())
        return surrogate, torch.stack(query_losses).mean()

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        out = self.raw(batch["image"], batch.get("reference"))
        if self.trainable:
            loss = self.regression_loss(out, self.standardised(batch["mos"]))
            self.mean_loss[stage].update(loss, len(out))
        # An identical pair has PSNR = inf: it ranks first, and stays finite for the fits.
        score = torch.nan_to_num(self.to_label_units(out), posinf=1e6, neginf=-1e6)
        sign = self.label_sign if self.trainable else self.score_sign
        self.metrics[stage].update(batch["index"], sign * score, self.label_sign * batch["mos"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _epoch_end(self, stage: str) -> None:
        metric = self.metrics[stage]
        values = metric.compute()  # a collective under DDP
        samples = np.asarray(list(metric.gathered().values()), np.float64).reshape(-1, 2)
        metric.reset()
        if self.trainable:
            values["loss"] = self.mean_loss[stage].compute()
        self.mean_loss[stage].reset()
        self.log_metrics(stage, values)
        if stage == "val" and self.plots_due():
            self._write_plot(samples)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def on_fit_start(self) -> None:
        # trainer.log_dir broadcasts under DDP, so every rank must ask for it, here, together.
        log_dir = self.trainer.log_dir
        self._plot_dir = Path(log_dir) / "plots" if log_dir else None

    def _write_plot(self, samples: np.ndarray) -> None:
        folder = getattr(self, "_plot_dir", None)
        if self.trainer.sanity_checking or folder is None or len(samples) < 2:
            return
        score_scatter(
            folder / f"val_scatter_epoch{self.current_epoch:03d}.png",
            samples[:, 0],
            samples[:, 1],
            f"validation, epoch {self.current_epoch}",
            xlabel=f"{self.hparams.model['name']} score (aligned)",
        )

    # ---------------------------------------------------------------------------- predict
    @torch.no_grad()
    def score_images(
        self, images: list[np.ndarray], references: list[np.ndarray] | None, datamodule: Any
    ) -> list[float]:
        """Scores of (H, W, 3) uint8 images (with their references for full-reference models),
        in label units for learned models and the metric's own units otherwise."""
        needs = getattr(self.model, "needs_reference", False)
        if needs and references is None:
            raise DataError(
                f"model {self.hparams.model['name']!r} is full-reference: give "
                "reference=<image or folder> (distorted and reference pairs)"
            )
        scores = []
        for i, image in enumerate(images):
            x = datamodule.to_tensor(image)[None].to(self.device)
            r = datamodule.to_tensor(references[i])[None].to(self.device) if needs else None
            scores.append(float(self.to_label_units(self.raw(x, r))[0]))
        return scores

    def predict_files(
        self,
        files: list[Path],
        out_dir: Path,
        datamodule: Any,
        *,
        references: str | Path | None = None,
        video: bool = False,
    ) -> list[dict]:
        """Score each image (with its reference from ``references``, a file or folder, see
        ``pair_references``); a video file (``VIDEO_SUFFIXES``) scores as the mean of its frames,
        as does the whole list with ``video`` (a folder of frames). Writes ``scores.csv``;
        returns one record per image or video."""
        files = [Path(f) for f in files]
        refs = pair_references(files, references) if references is not None else None
        records = []
        common = {"model": self.hparams.model["name"], "higher_is_better": self._higher_is_better()}
        if video:
            frames = [read_rgb(f) for f in files]
            ref_frames = [read_rgb(r) for r in refs] if refs else None
            scores = self.score_images(frames, ref_frames, datamodule)
            folder = files[0].parent if files else out_dir
            records.append(
                {
                    "file": str(folder),
                    "score": float(np.mean(scores)),
                    "frames": len(scores),
                    "frame_scores": scores,
                    **common,
                }
            )
        for i, path in enumerate([] if video else files):
            ref = refs[i] if refs else None
            if path.suffix.lower() in VIDEO_SUFFIXES:
                frames = read_video_frames(path)
                ref_frames = read_video_frames(ref) if ref else None
                scores = self.score_images(frames, ref_frames, datamodule)
                record = {"file": str(path), "score": float(np.mean(scores))}
                record["frames"] = len(scores)
            else:
                ref_images = [read_rgb(ref)] if ref else None
                score = self.score_images([read_rgb(path)], ref_images, datamodule)[0]
                record = {"file": str(path), "score": score}
            record.update(reference=str(ref) if ref else None, **common)
            records.append(record)
        write_scores_csv(out_dir / "scores.csv", records)
        return records

    def _higher_is_better(self) -> bool:
        """Whether a higher predicted score means better quality."""
        if self.trainable:
            return self.label_sign > 0
        return self.score_sign > 0
