"""Faster R-CNN in the ``detection`` suite (``--compare torchvision``): ours,
``train.py experiment=bccd_faster_rcnn`` fitted by Lightning through ``DetectionModule``,
against torchvision's plain training loop (its ``references/detection`` engine: the loss dict
summed, backward, step) on the same network, batches and schedule, scored by pycocotools.

Both sides start from one seed and build the network and the data module the same way, so
they see the same initial weights and the same augmented batches (``SeededSampler`` seeds every
sample from (seed, epoch, index)). The plain side writes the recipe out by hand: parameter
groups (no decay on biases and norms), SGD, warm-up then per-epoch cosine, gradient-norm
clipping, the weight EMA that is evaluated. Each side validates once, after its last epoch;
each timed run is one whole training, the sides alternating."""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionzoo.bench.harness import (
    REPO,
    Measurement,
    alternate,
    compose,
    device_overrides,
    paired_ratio,
    summarize,
)
from visionzoo.bench.report import md_table, raw_table
from visionzoo.cli import build_run, to_plain
from visionzoo.core.ema import ModelEMA

EXPERIMENT = "experiment=bccd_faster_rcnn"
TINY = [  # a few steps of a small network: the suite's smoke test
    "data.image_size=128",
    "data.batch_size=2",
    "data.eval_batch_size=2",
    "task.nominal_batch_size=${data.batch_size}",
    "model.fpn_channels=32",
    "model.box_head_dim=64",
    "model.rpn_post_nms_top_n_train=64",
    "model.box_batch_size_per_image=16",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
]


def overrides(args: argparse.Namespace, device: torch.device, epochs: int) -> list[str]:
    """Our side's command line (also the plain side's config): validation after the last epoch
    only, no plots or progress bar, on ``device``."""
    out = [
        EXPERIMENT,
        f"data.recipe.epochs={epochs}",  # trainer.max_epochs follows; the data module reads it
        f"trainer.check_val_every_n_epoch={epochs}",
        "task.plots=false",
        "callbacks.progress=none",
        *device_overrides(device),
        *args.override,
    ]
    return out + TINY if args.tiny else out


def _limit(value: Any, n: int) -> int:
    return n if value is None else min(int(value), n)


class StepLosses(pl.Callback):
    """Each step's loss; and the global torch seed set again just before the first batch, where
    the plain side sets it, so that torchvision's RPN / RoI sampling draws the same numbers on
    both sides (Lightning's set-up consumes some of the generator before the first batch)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == 0:
            torch.manual_seed(self.seed)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def run_ours(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """``train.py``'s fit, in this process: the same seeding, build and ``trainer.fit``."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer, module, datamodule = build_run(cfg, run_dir)
    record = StepLosses(cfg.seed)
    trainer.callbacks.append(record)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "seconds": seconds,
        "map": metrics["val/map"],
        "map50": metrics["val/map50"],
        "losses": record.losses,
    }


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """torchvision's ``--norm-weight-decay 0`` split, plus biases without decay (the recipe's)."""
    biases, weights, norms = [], [], []
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                biases.append(p)
            elif isinstance(module, norm_types):
                norms.append(p)
            else:
                weights.append(p)
    return [
        {"params": biases, "weight_decay": 0.0},
        {"params": weights, "weight_decay": weight_decay},
        {"params": norms, "weight_decay": 0.0},
    ]


def coco_ground_truth(records: list[Any], class_names: list[str]) -> COCO:
    images, annotations = [], []
    for rec in records:
        images.append({"id": rec.image_id, "width": rec.width, "height": rec.height})
        for (x1, y1, x2, y2), label in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": rec.image_id,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
    }
    gt.createIndex()
    return gt


@torch.no_grad()
def coco_map(
    model: nn.Module, loader: Any, n_batches: int, gt: COCO, device
) -> tuple[float, float]:
    """pycocotools' mAP50-95 and mAP50 of ``model`` on ``n_batches`` of the letterboxed
    validation loader, boxes mapped back to the original images by hand."""
    model.eval()
    results = []
    seen = []
    for i, batch in enumerate(loader):
        if i >= n_batches:
            break
        detections = model(batch["image"].to(device).float() / 255)
        for det, image_id, (ratio, (pad_w, pad_h)), (h, w) in zip(
            detections, batch["image_id"], batch["ratio_pad"], batch["orig_size"], strict=True
        ):
            seen.append(image_id)
            boxes = det["boxes"].float().cpu().numpy()
            boxes = (boxes - np.array([pad_w, pad_h, pad_w, pad_h], np.float32)) / ratio
            boxes = boxes.clip(0, [w, h, w, h])
            for (x1, y1, x2, y2), score, label in zip(
                boxes.tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True
            ):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": int(label) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score,
                    }
                )
    if not results:
        return 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = seen
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def run_plain(cfg: Any, run_dir: Path, device: torch.device) -> dict[str, Any]:
    """torchvision's detection training loop on our network and batches, the recipe by hand."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    _, module, datamodule = build_run(cfg, run_dir)  # the network and data, built as ours are
    start = time.perf_counter()
    model = module.model.to(device)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    task, opt_spec = to_plain(cfg.task), to_plain(cfg.optimizer)
    sched = to_plain(cfg.scheduler)
    epochs = int(cfg.trainer.max_epochs)
    nb = _limit(cfg.trainer.limit_train_batches, len(loader))
    assert task["nominal_batch_size"] == cfg.data.batch_size, "the plain loop never accumulates"
    optimizer = torch.optim.SGD(
        param_groups(model, opt_spec["weight_decay"]),
        lr=opt_spec["lr"],
        momentum=opt_spec["momentum"],
        nesterov=opt_spec.get("nesterov", False),
    )
    ema = ModelEMA(model, **task["ema"]).to(device)
    warm = max(round(sched["warmup_epochs"] * nb), task["warmup_min_iters"])
    floor = sched["min_lr_ratio"]
    losses = []
    for epoch in range(epochs):
        model.train()
        loader.sampler.set_epoch(epoch)
        cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        for i, batch in enumerate(loader):
            if i >= nb:
                break
            step = epoch * nb + i
            if step == 0:
                torch.manual_seed(cfg.seed)  # where ours sets it again (StepLosses)
            factor = cosine * min(step / warm, 1.0)  # linear warm-up from 0, every group
            for g in optimizer.param_groups:
                g["lr"] = opt_spec["lr"] * factor
            images = batch["image"].to(device).float() / 255
            targets = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
            loss_dict = model(images, targets)
            loss = loss_dict["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if task.get("grad_clip"):
                nn.utils.clip_grad_norm_(model.parameters(), task["grad_clip"])
            optimizer.step()
            ema.update(model)
            losses.append(float(loss))
    source = datamodule.source("val")
    gt = coco_ground_truth(source.records, list(source.class_names))
    val = datamodule.val_dataloader()
    m, m50 = coco_map(ema.module, val, _limit(cfg.trainer.limit_val_batches, len(val)), gt, device)
    return {"seconds": time.perf_counter() - start, "map": m, "map50": m50, "losses": losses}


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    epochs = args.epochs or (1 if args.tiny else 8)
    cmd = overrides(args, device, epochs)
    work = Path(tempfile.mkdtemp(prefix="rcnn_", dir=args.out))
    outcomes: dict[str, list[dict[str, Any]]] = {"ours": [], "torchvision": []}

    def side(name: str):
        def once() -> Measurement:
            run_dir = work / f"{name}_{len(outcomes[name])}"
            cfg = compose(cmd, run_dir)
            if name == "ours":
                out = run_ours(cfg, run_dir)
            else:
                out = run_plain(cfg, run_dir, device)
            outcomes[name].append(out)
            steps = len(out["losses"])  # one optimizer step per batch on both sides
            return Measurement(out["seconds"], steps * int(cfg.data.batch_size), steps)

        return once

    print(f"detection: Faster R-CNN ours vs torchvision's loop, {epochs}-epoch runs", flush=True)
    raw = alternate({"ours": side("ours"), "torchvision": side("torchvision")}, args.repeats, 0)
    throughput = {k: summarize(v) for k, v in raw.items()}
    first = {k: v[0] for k, v in outcomes.items()}
    a, b = first["ours"]["losses"], first["torchvision"]["losses"]
    return {
        "settings": {
            "ours": "train.py " + " ".join(cmd),
            "epochs_per_run": epochs,
            "data": str(REPO / "../shared/data/bccd"),
        },
        "quality": {
            k: {"map": v["map"], "map50": v["map50"], "seconds": v["seconds"]}
            for k, v in first.items()
        },
        "map_difference": first["ours"]["map"] - first["torchvision"]["map"],
        "map_within_0_01": abs(first["ours"]["map"] - first["torchvision"]["map"]) <= 0.01,
        "max_step_loss_difference": max(abs(x - y) for x, y in zip(a, b, strict=True)),
        "throughput": throughput,
        "throughput_ratio": throughput["ours"]["images_per_s"]
        / throughput["torchvision"]["images_per_s"],
        "throughput_ratio_paired": paired_ratio(raw["ours"], raw["torchvision"]),
    }


def markdown_lines(result: dict[str, Any]) -> list[str]:
    s, q = result["settings"], result["quality"]
    lines = [
        "## Faster R-CNN: ours vs torchvision's plain training loop",
        "",
        f"Ours: `python {s['ours']}`; torchvision's loop on the same network, batches and "
        f"schedule, scored by pycocotools. Each timed run is a whole {s['epochs_per_run']}-epoch "
        "training plus one validation, the sides alternating.",
        "",
        md_table(
            ["side", "val mAP50-95", "val mAP50", "seconds", "train img/s"],
            [
                [k, q[k]["map"], q[k]["map50"], q[k]["seconds"], v["images_per_s"]]
                for k, v in result["throughput"].items()
            ],
        ),
        "",
        f"mAP difference {result['map_difference']:+.4f} (within 0.01: "
        f"{result['map_within_0_01']}); largest per-step loss difference "
        f"{result['max_step_loss_difference']:.2e}; images/s ratio ours / torchvision "
        f"**{result['throughput_ratio']:.3f}** (paired {result['throughput_ratio_paired']:.3f}).",
        "",
        "### Raw timings",
        "",
        raw_table({k: v["raw"] for k, v in result["throughput"].items()}),
        "",
    ]
    return lines
