"""``RecognitionModule``: trains an embedding network with a margin head or a pair/triplet loss
and validates it by face verification (insightface's protocol) on one or more pair sets."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from visionzoo.core.gathered import GatheredMetric
from visionzoo.core.io import read_rgb
from visionzoo.core.module import VisionModule
from visionzoo.recognition.partial_fc import (
    PartialFC,
    _all_gather_rows,
    _world,
    ignore_shards_in_ddp,
)
from visionzoo.recognition.plots import plot_roc, plot_score_histograms
from visionzoo.recognition.verification import (
    identification,
    retrieval,
    roc_metrics,
    verification_accuracy,
)


class EmbeddingStore(GatheredMetric[np.ndarray]):
    """One flip-fused, L2-normalised embedding (and its raw norm) per validation image, by index,
    gathered over DDP ranks."""

    def update(self, indices: torch.Tensor, embeddings: torch.Tensor) -> None:
        rows = embeddings.detach().float().cpu().numpy()
        for i, row in zip(indices.tolist(), rows, strict=True):
            self._add(int(i), row)

    def compute(self) -> dict[str, Any]:
        samples = self.gathered()
        return {
            "index": np.array(list(samples), np.int64),
            "embedding": np.stack(list(samples.values())),
        }


def embed(model: torch.nn.Module, images: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """Embeddings (B, D) of face images (B, 3, H, W): insightface adds the embedding of the
    mirrored image before normalising (``flip``); the result is L2-normalised."""
    emb = model(images)
    if flip:
        emb = emb + model(torch.flip(images, dims=[3]))
    return F.normalize(emb.float(), dim=1)


class RecognitionModule(VisionModule):
    """Face recognition training and verification.

    ``flip_test``: flip-fused embeddings at evaluation (insightface's default). ``folds``: the
    k of k-fold verification accuracy. ``plots``: ROC and genuine/impostor histograms of each
    set at each validation."""

    def __init__(
        self,
        *,
        loss: Any = None,  # the loss is the model's head (model=arcface, ...): no loss group
        flip_test: bool = True,
        folds: int = 10,
        plots: bool = True,
        **base_kw: Any,
    ) -> None:
        super().__init__(**base_kw)
        self.flip_test = flip_test
        self.folds = folds
        self.set_names = (self.hparams.data_meta or {}).get("val_sets", [])
        self.store = EmbeddingStore()
        # thresholds on cosine similarity per FAR, from the last validation (for compare)
        self.far_thresholds: dict[str, float] = {}

    @property
    def embedder(self) -> torch.nn.Module:
        """The embedding network alone (what predict, compare and export use)."""
        return self.model.backbone

    def setup(self, stage: str) -> None:
        """Under DDP, re-build a Partial-FC head for this rank's share of the classes (the module
        is built before the process group exists, when every rank would hold all of them)."""
        head = self.model.head
        if isinstance(head, PartialFC) and head.num_local != _shard(head.num_classes)[1]:
            self.model.head = PartialFC(**head.spec)
            self.model.head.spec = head.spec
            ignore_shards_in_ddp(self)
        super().setup(stage)

    def _shard_keys(self) -> dict[str, PartialFC]:
        """State-dict keys of Partial-FC class shards, with their head."""
        return {
            f"{prefix}.{name}": sub
            for prefix, sub in self.named_modules()
            if isinstance(sub, PartialFC)
            for name, _ in sub.named_parameters()
        }

    def extra_param_groups(self) -> list[dict[str, Any]]:
        groups = getattr(self.model.head, "param_groups", None)
        return list(groups()) if callable(groups) else []

    # ------------------------------------------------------------------------------ train
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        embeddings = self.model(batch["image"])
        loss = self.model.loss(embeddings, batch["label"])
        terms = getattr(self.model.head, "last_terms", {}) or {}
        self.log_dict(
            {"train/loss": loss.detach(), **{f"train/{k}": v for k, v in terms.items()}},
            prog_bar=True,
            on_epoch=True,  # small face sets have fewer steps per epoch than the log interval
            batch_size=batch["image"].shape[0],
        )
        return loss

    # ------------------------------------------------------------------------------- eval
    def _eval_step(self, batch: dict[str, Any]) -> None:
        self.store.update(batch["index"], embed(self.model, batch["image"], self.flip_test))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _epoch_end(self, stage: str) -> None:
        out = self.store.compute()  # a collective: every rank takes part
        self.store.reset()
        datamodule = self.trainer.datamodule
        table = np.zeros((int(out["index"].max()) + 1, out["embedding"].shape[1]), np.float32)
        table[out["index"]] = out["embedding"]
        scalars: dict[str, float] = {}
        accuracies = []
        for number, vset in enumerate(datamodule.sets):
            e1, e2 = table[vset.first], table[vset.second]
            ver = verification_accuracy(e1, e2, vset.same, folds=self.folds)
            scores = (e1 * e2).sum(1)  # cosine similarity
            roc = roc_metrics(scores, vset.same)
            prefix = f"{vset.name}/"
            scalars[prefix + "acc"] = ver["accuracy"]
            scalars[prefix + "acc_std"] = ver["accuracy_std"]
            scalars[prefix + "auc"] = roc["auc"]
            scalars[prefix + "eer"] = roc["eer"]
            for far, tar in roc["tar_at_far"].items():
                if tar is not None:
                    scalars[f"{prefix}tar@far={far:g}"] = tar
            if len(vset.images):
                emb, labels = table[vset.images], vset.labels
                scalars.update({prefix + k: v for k, v in retrieval(emb, labels).items()})
                gallery = first_of_each(labels)
                probe = np.setdiff1d(np.arange(len(labels)), gallery)
                if len(probe):
                    ident = identification(emb[gallery], labels[gallery], emb[probe], labels[probe])
                    scalars.update({prefix + k: v for k, v in ident.items()})
            accuracies.append(ver["accuracy"])
            if number == 0:  # compare.py accepts a pair when its similarity >= threshold
                self.far_thresholds = {
                    f"{far:g}": t
                    for far, t in roc["threshold_at_far"].items()
                    if t is not None and np.isfinite(t)
                }
            if self._plotting(stage):
                self._write_plots(vset.name, roc, scores, vset.same)
        scalars["acc"] = float(np.mean(accuracies))
        self.log_metrics(stage, scalars)

    def _plotting(self, stage: str) -> bool:
        return stage == "val" and self.plots_due() and getattr(self, "_plot_dir", None) is not None

    def on_fit_start(self) -> None:
        log_dir = self.trainer.log_dir  # broadcast under DDP: every rank asks
        self._plot_dir = Path(log_dir) / "plots" if log_dir else None

    def _write_plots(self, name: str, roc: dict, scores: np.ndarray, same: np.ndarray) -> None:
        epoch = self.current_epoch
        plot_roc(roc["fpr"], roc["tpr"], self._plot_dir / f"roc_{name}_epoch{epoch:03d}.png", name)
        plot_score_histograms(scores, same, self._plot_dir / f"scores_{name}_epoch{epoch:03d}.png")

    # ---------------------------------------------------------------------------- predict
    @torch.no_grad()
    def embed_files(self, files: list[Path], transform: Any, batch_size: int = 64) -> np.ndarray:
        """L2-normalised, flip-fused embeddings (N, D) of image files."""
        net = self.embedder.eval()
        rows = []
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images = torch.stack([transform(image=read_rgb(f))["image"] for f in chunk])
            rows.append(embed(net, images.to(self.device), self.flip_test).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)

    def predict_files(self, files: list[Path], out_dir: Path, datamodule: Any) -> list[dict]:
        """Write ``embeddings.npy`` (N, D float32, row i = file i) and ``embeddings.csv``
        (row, file); return one record per file."""
        emb = self.embed_files(files, datamodule.eval_tf)
        np.save(out_dir / "embeddings.npy", emb.astype(np.float32))
        with (out_dir / "embeddings.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", "file"])
            writer.writerows([i, str(p)] for i, p in enumerate(files))
        return [
            {"file": str(p), "row": i, "embedding": str(out_dir / "embeddings.npy")}
            for i, p in enumerate(files)
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints hold every class centre: Partial-FC shards are gathered from all ranks
        (a collective; Lightning calls this hook on every rank)."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["visionzoo"]["far_thresholds"] = dict(self.far_thresholds)
        shards = self._shard_keys()
        if shards:
            own = {id(p) for head in shards.values() for p in head.parameters()}
            checkpoint["visionzoo"]["shard_optimizer_ids"] = [
                [
                    i
                    for i, p in enumerate(q for g in opt.param_groups for q in g["params"])
                    if id(p) in own
                ]
                for opt in (self.trainer.optimizers if self._trainer else [])
            ]
        if _world()[0] > 1:
            for key in shards:
                checkpoint["state_dict"][key] = _all_gather_rows(self.state_dict()[key])[0].cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Each rank keeps its own rows of the saved class centres. Under DDP the optimizer
        moments of the shards restart (Lightning stores rank 0's optimizer state only)."""
        super().on_load_checkpoint(checkpoint)
        self.far_thresholds = dict(checkpoint.get("visionzoo", {}).get("far_thresholds", {}))
        world = _world()[0]
        for key, head in self._shard_keys().items():
            full = checkpoint["state_dict"].get(key)
            if full is not None and full.shape[0] == head.num_classes:
                start, count = _shard(head.num_classes)
                checkpoint["state_dict"][key] = full[start : start + count].clone()
        if world > 1:  # ids (optimizer numbering) of the shards, recorded when saving
            for state, ids in zip(
                checkpoint.get("optimizer_states", []),
                checkpoint.get("visionzoo", {}).get("shard_optimizer_ids", []),
                strict=False,
            ):
                for i in ids:
                    state["state"].pop(i, None)


def first_of_each(labels: np.ndarray) -> np.ndarray:
    """Index of the first image of each identity (the gallery of closed-set identification)."""
    _, first = np.unique(labels, return_index=True)
    return np.sort(first)


def _shard(num_classes: int) -> tuple[int, int]:
    """(first class, number of classes) of this rank's Partial-FC shard."""
    world, rank = _world()
    base, extra = divmod(num_classes, world)
    return rank * base + min(rank, extra), base + int(rank < extra)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """Parameters in the optimizer's state-dict numbering (groups in order)."""
    return [p for group in optimizer.param_groups for p in group["params"]]
