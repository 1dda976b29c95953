#!/usr/bin/env python
"""Reproducible speed and quality benchmarks for visionzoo.

    python scripts/benchmark.py segmentation [--out bench_out] [--tiny] [--repeats N]
    python scripts/benchmark.py overhead     [--out bench_out] [--tiny] [--repeats N]
    python scripts/benchmark.py data         [--out bench_out] [--tiny] [--repeats N]
    python scripts/benchmark.py detection    --ultralytics-python /tmp/ultra/bin/python

Suites (each writes ``<out>/<suite>.json`` and ``<out>/<suite>.md``):

``segmentation``
    The membrane acceptance run: ``experiment=membrane_unet`` trained by ``trainer.fit`` exactly as
    ``train.py`` does, next to smp's ``Unet`` on the same timm encoder trained by a plain PyTorch
    loop with the same data loader, loss, optimizer, schedule, epochs and seed. Reports val Dice
    of the foreground class and mIoU of both, then training images/s of both measured in
    alternating timed chunks.
``overhead``
    Framework cost per family: our LightningModule under ``trainer.fit`` vs a plain loop driving
    the same ``nn.Module`` with the same loss and optimizer, both fed the same pre-collated
    batches, so the ratio measures Lightning + visionzoo and nothing else.
``data``
    The input pipeline alone (decode + augment + collate) per dataset case and worker count, and
    whether the loader or the model limits training speed.
``detection``
    BCCD yolov5n, ours (``train.py experiment=bccd_yolov5n``) against Ultralytics' YOLOv5nu run
    from a separate virtual environment (``--ultralytics-python``), each as its users run it:
    alternating whole training commands of the same length; optionally one full run per side
    for mAP (``--quality-epochs 60``).

Every figure is the median over ``--repeats`` timed runs after ``--warmup`` untimed-for-results
runs; wherever two sides are compared they alternate within one process, so load from other
jobs on the machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

import hydra  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from visionzoo.cli import (  # noqa: E402
    CONFIG_DIR,
    build_datamodule,
    build_run,
    build_trainer,
    to_plain,
)
from visionzoo.core.module import resolve_channels_last  # noqa: E402
from visionzoo.core.utils import call_spec  # noqa: E402
from visionzoo.detection.formats import read_voc, write_yolo  # noqa: E402
from visionzoo.losses.combined import build_loss  # noqa: E402
from visionzoo.segmentation.metrics import SegmentationMetrics  # noqa: E402

Batch = Any
SUITES = ("segmentation", "overhead", "data", "detection")
MEMBRANE_RECIPE = "experiment=membrane_unet"
# Timing runs must not pay for logging, progress bars or checkpoint files that the plain loop does
# not write. build_trainer always adds a ModelCheckpoint, so `enable_checkpointing=False` would
# raise; save_top_k=0 + save_last=false makes that callback a no-op instead.
LEAN_TRAINER = [
    "logger=none",
    "callbacks.progress=none",
    "callbacks.checkpoint.save_top_k=0",
    "callbacks.checkpoint.save_last=false",
    "trainer.limit_val_batches=0",
]


# =========================================================================== shared helpers
def quiet() -> None:
    """Silence Lightning's info banners and warnings (worker counts, missing val loop, ...): they
    are expected here and would bury the results."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def machine_info() -> dict[str, Any]:
    """What the figures were measured on; timings mean little without it."""
    import timm

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "timm": timm.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import segmentation_models_pytorch as smp

        info["segmentation_models_pytorch"] = smp.__version__
    except ImportError:
        info["segmentation_models_pytorch"] = None
    try:
        import albumentations

        info["albumentations"] = albumentations.__version__
    except ImportError:
        pass
    return info


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: the machine is shared, so record how busy it was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def compose(overrides: Sequence[str]) -> DictConfig:
    """The ``train`` config with ``overrides``, as ``python train.py <overrides>`` composes it."""
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra.compose("train", overrides=list(overrides))


def run_dir_override(path: Path) -> str:
    """``paths.run_dir`` normally comes from Hydra's runtime, which compose() does not set."""
    return f"paths.run_dir='{path}'"


def resolve_device(choice: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible")
    return torch.device(choice)


def device_overrides(device: torch.device) -> list[str]:
    """Our side runs on the trainer preset of the device the plain side uses."""
    return ["trainer=gpu"] if device.type == "cuda" else ["trainer=cpu"]


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(cfg: DictConfig, device: torch.device) -> Callable[[], AbstractContextManager]:
    """The plain loop's equivalent of the trainer's ``precision`` setting."""
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision in ("32-true", "32"):
        return nullcontext
    if precision == "bf16-mixed":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise SystemExit(
        f"error: the plain loop supports trainer.precision 32-true or bf16-mixed, not {precision!r}"
    )


def limit_count(limit: int | float | None, n: int) -> int:
    """Batches Lightning runs for ``limit_*_batches=limit`` out of ``n`` (int = count,
    float = fraction)."""
    if limit is None:
        return n
    if isinstance(limit, float):
        return int(n * limit)
    return min(n, int(limit))


def build_optimizer(
    model: nn.Module, cfg: DictConfig, total_steps: int, epochs: int
) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer and per-step scheduler exactly as ``VisionModule.configure_optimizers``
    builds them, so plain loops train under the same recipe."""
    spec = to_plain(cfg.optimizer)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    wd = spec.get("weight_decay", 0.0)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = call_spec({**spec, "weight_decay": 0.0}, groups)
    sched_spec = to_plain(cfg.get("scheduler")) or None
    if not sched_spec:
        return optimizer, None
    scheduler = call_spec(
        sched_spec,
        optimizer,
        total_steps=total_steps,
        steps_per_epoch=max(math.ceil(total_steps / max(epochs, 1)), 1),
    )
    return optimizer, scheduler


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class Measurement:
    """One timed run of one side."""

    seconds: float
    images: int
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, repeat: int, warmup: bool) -> dict[str, Any]:
        return {
            "repeat": repeat,
            "warmup": warmup,
            "seconds": round(self.seconds, 4),
            "images": self.images,
            "steps": self.steps,
            "images_per_s": self.images / self.seconds if self.seconds > 0 else float("nan"),
            # Other jobs on a shared machine can slow single runs several-fold (thread
            # oversubscription); the load next to each timing shows which runs they hit.
            "load_1min": (load_average() or [float("nan")])[0],
            **self.extra,
        }


def alternate(
    sides: dict[str, Callable[[], Measurement]], repeats: int, warmup: int
) -> dict[str, list[dict[str, Any]]]:
    """Run every side once per round, ``warmup + repeats`` rounds, reversing the order each round
    so neither side always runs right after the other (caches, thermal state, other jobs)."""
    names = list(sides)
    raw: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()  # garbage from the other side must not be collected on this side's clock
            m = sides[name]()
            raw[name].append(m.row(r - warmup, r < warmup))
            print(
                f"  [{'warm-up' if r < warmup else f'repeat {r - warmup + 1}/{repeats}'}] "
                f"{name}: {m.images} images in {m.seconds:.2f} s = "
                f"{m.images / m.seconds:.2f} img/s",
                flush=True,
            )
    return raw


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median images/s and steps/s over the timed (non-warm-up) runs, plus the raw rows."""
    timed = [r for r in rows if not r["warmup"]]
    out = {
        "images_per_s": median([r["images_per_s"] for r in timed]),
        "seconds_median": median([r["seconds"] for r in timed]),
        "repeats": len(timed),
        "raw": rows,
    }
    if any(r["steps"] for r in timed):
        out["steps_per_s"] = median([r["steps"] / r["seconds"] for r in timed])
    return out


def paired_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    """Median over timed rounds of ``a``'s images/s over ``b``'s in the same round: the two runs
    of a round are adjacent in time, so load drifting on the shared machine largely cancels."""
    pairs = [
        x["images_per_s"] / y["images_per_s"] for x, y in zip(a, b, strict=True) if not x["warmup"]
    ]
    return median(pairs)


def cpu_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    """Median images per CPU-second of ``a`` over that of ``b`` (timed runs only)."""

    def per_cpu_s(rows: list[dict[str, Any]]) -> float:
        return median([r["images"] / r["cpu_seconds"] for r in rows if not r["warmup"]])

    return per_cpu_s(a) / per_cpu_s(b)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def md_header(title: str, result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    return [
        f"# {title}",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['torch_threads']} torch threads), "
        f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}, pytorch-lightning "
        f"{m['pytorch_lightning']}, timm {m['timm']}.  ",
        f"Load average at start / end: {result['load_average_start']} / "
        f"{result['load_average_end']}; suite runtime {result['runtime_s']:.0f} s.",
        "",
    ]


def raw_table(rows_by_side: dict[str, list[dict[str, Any]]]) -> str:
    rows = [
        [
            side,
            r["repeat"],
            "yes" if r["warmup"] else "",
            r["images"],
            r["seconds"],
            r["images_per_s"],
            r.get("load_1min", ""),
        ]
        for side, rs in rows_by_side.items()
        for r in rs
    ]
    return md_table(
        ["side", "repeat", "warm-up", "images", "seconds", "img/s", "load (1 min)"], rows
    )


# =========================================================================== family cases
@dataclass
class FamilyCase:
    """What the generic suites need to know about one task family.

    ``overrides`` compose the family's default training config; ``plain_loop`` builds a plain
    PyTorch training loop over the module's ``nn.Module`` (same loss and optimizer);
    ``images_in`` counts the images of a collated batch; ``eval_forward`` runs the module's
    inference path on one batch (under ``no_grad``, eval mode, set by the caller).
    """

    overrides: list[str]
    plain_loop: Callable[[nn.Module, DictConfig, torch.device], PlainLoop]
    images_in: Callable[[Batch], int]
    eval_forward: Callable[[pl.LightningModule, Batch, torch.device], Any]
    # overhead: pre-collated batches per timed run, ≈ 9 s of CPU training each, so that other
    # jobs' noise averages out
    overhead_batches: int = 12


class PlainLoop:
    """A plain PyTorch training loop: forward, loss, backward, optimizer and scheduler step per
    batch, nothing else. ``step`` is family-specific; ``run`` builds a fresh optimizer and
    schedule like every ``trainer.fit`` call does (in the timed region, as fit does)."""

    def __init__(
        self, model: nn.Module, loss_fn: nn.Module, cfg: DictConfig, device: torch.device
    ) -> None:
        self.model = model.to(device)
        self.loss_fn = loss_fn.to(device)
        self.cfg = cfg
        self.device = device
        self.autocast = autocast_for(cfg, device)
        # model.channels_last as VisionModule.setup resolves it
        layout = cfg.model.get("channels_last", "auto")
        self.channels_last = resolve_channels_last(layout, model, device.type == "cuda")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def images(self, batch: Batch) -> torch.Tensor:
        """The batch's images on the device, in the layout the model was set up for."""
        x = batch["image"].to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def step(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def run(
        self,
        batches: Iterator[Batch] | Sequence[Batch],
        steps: int,
        epochs: int = 1,
        total_steps: int | None = None,
        set_epoch: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """Train ``epochs`` passes of at most ``steps`` batches; returns (images, steps)."""
        self.model.train()
        total = total_steps or steps * epochs
        self.optimizer, self.scheduler = build_optimizer(self.model, self.cfg, total, epochs)
        images = done = 0
        for epoch in range(epochs):
            if set_epoch is not None:
                set_epoch(epoch)
            for i, batch in enumerate(batches):
                if i >= steps:
                    break
                loss = self.step(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.before_step()
                self.optimizer.step()
                self.after_step()
                if self.scheduler is not None:
                    self.scheduler.step()
                images += self.images_in(batch)
                done += 1
        sync(self.device)
        return images, done

    def images_in(self, batch: Batch) -> int:
        raise NotImplementedError

    def before_step(self) -> None:
        """Between backward and the optimizer step (e.g. gradient clipping)."""

    def after_step(self) -> None:
        """After the optimizer step (e.g. a weight EMA)."""


class SegmentationPlainLoop(PlainLoop):
    """Per-pixel logits from ``model(image)`` and ``loss(logits, mask)``."""

    def step(self, batch: Batch) -> torch.Tensor:
        x = self.images(batch)
        y = batch["mask"].to(self.device, non_blocking=True)
        with self.autocast():
            return self.loss_fn(self.model(x), y)

    def images_in(self, batch: Batch) -> int:
        return int(batch["image"].shape[0])


def _segmentation_plain(model: nn.Module, cfg: DictConfig, device: torch.device) -> PlainLoop:
    return SegmentationPlainLoop(model, build_loss(to_plain(cfg.loss)), cfg, device)


def _segmentation_eval(module: pl.LightningModule, batch: Batch, device: torch.device) -> Any:
    return module.predict_logits(batch["image"].to(device, non_blocking=True))


class DetectionPlainLoop(PlainLoop):
    """``model(images, targets)["loss"]`` with the detection recipe's per-step work done by hand:
    gradient-norm clipping and the weight EMA update (the overhead run steps every batch)."""

    def __init__(self, model: nn.Module, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(model, nn.Identity(), cfg, device)
        from visionzoo.core.ema import ModelEMA

        ema = cfg.task.get("ema")
        self.ema = ModelEMA(self.model, **ema).to(device) if ema else None
        self.clip = cfg.task.get("grad_clip")

    def step(self, batch: Batch) -> torch.Tensor:
        x = self.images(batch).float() / 255
        targets = [{k: v.to(self.device) for k, v in t.items()} for t in batch["targets"]]
        with self.autocast():
            return self.model(x, targets)["loss"]

    def before_step(self) -> None:
        if self.clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def images_in(self, batch: Batch) -> int:
        return int(batch["image"].shape[0])


def _detection_eval(module: pl.LightningModule, batch: Batch, device: torch.device) -> Any:
    return module.eval_model(batch["image"].to(device, non_blocking=True).float() / 255)


def image_size_of(cfg: DictConfig) -> list[int]:
    size = cfg.data.image_size
    return [int(size), int(size)] if isinstance(size, int) else list(size)


# Families register here, each with its own plain step and eval call.
FAMILY_CASES: dict[str, Callable[[], FamilyCase]] = {
    "segmentation": lambda: FamilyCase(
        overrides=["task=segmentation"],  # synthetic_segmentation + unet (original) defaults
        plain_loop=_segmentation_plain,
        images_in=lambda b: int(b["image"].shape[0]),
        eval_forward=_segmentation_eval,
    ),
    "detection": lambda: FamilyCase(
        # synthetic shapes + yolov5n; one optimizer step per batch on both sides
        overrides=[
            "task=detection",
            "task.nominal_batch_size=${data.batch_size}",
            "task.plots=false",
        ],
        plain_loop=lambda model, cfg, device: DetectionPlainLoop(model, cfg, device),
        images_in=lambda b: int(b["image"].shape[0]),
        eval_forward=_detection_eval,
        overhead_batches=36,  # 8 × 256² steps take ≈ 0.25 s on 2 CPU cores
    ),
}


@dataclass
class DataCase:
    """One input pipeline to time: the config overrides that select it and its family."""

    name: str
    family: str
    overrides: list[str]
    needs: str | None = None  # a data folder relative to the repo root, when the case reads one


BCCD = "../shared/data/bccd"
DATA_CASES: dict[str, list[DataCase]] = {
    "detection": [
        # Real 640×480 JPEGs at 640 px: the acceptance case (mosaic vs yolov5n at 640).
        DataCase(
            "detection/bccd-mosaic-640",
            "detection",
            ["task=detection", "data=bccd", "data.image_size=640"],
            needs=BCCD,
        ),
        DataCase(
            "detection/bccd-mosaic-mixup-640",
            "detection",
            ["task=detection", "data=bccd", "data.image_size=640", "data.augment.mixup=1.0"],
            needs=BCCD,
        ),
    ],
    "segmentation": [
        DataCase("segmentation/synthetic", "segmentation", ["task=segmentation"]),
        DataCase(
            "segmentation/membrane",
            "segmentation",
            [MEMBRANE_RECIPE],
            needs="../shared/data/membrane",
        ),
    ],
}


class BatchList:
    """Pre-collated batches behind a loader-like face: Lightning takes a bare ``list`` for a
    collection of dataloaders, so ``trainer.fit`` needs this wrapper to see one loader."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collect_batches(loader: Any, n: int) -> list[Batch]:
    """The first ``n`` batches of ``loader`` (cycling when it is shorter), held in memory."""
    batches: list[Batch] = []
    while len(batches) < n:
        before = len(batches)
        for b in loader:
            batches.append(b)
            if len(batches) >= n:
                break
        if len(batches) == before:
            raise SystemExit("error: the training loader yielded no batches")
    return batches


# =========================================================================== segmentation suite
class _ValHistory(pl.Callback):
    """Records the validation metrics after each validation run (on_validation_end runs after the
    module's epoch-end logging has reached ``callback_metrics``)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.rows: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        row.update({name: float(m[key]) for name, key in self.keys.items() if key in m})
        self.rows.append(row)


def _best(history: list[dict[str, float]], key: str) -> dict[str, float]:
    rows = [r for r in history if key in r and not math.isnan(r[key])]
    if not rows:
        return {"value": float("nan"), "epoch": -1}
    top = max(rows, key=lambda r: r[key])
    return {"value": top[key], "epoch": int(top["epoch"])}


def _quality_summary(history: list[dict[str, float]], seconds: float) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {
        "final": {k: last.get(k, float("nan")) for k in ("dice_fg", "miou")},
        "best": {"dice_fg": _best(history, "dice_fg"), "miou": _best(history, "miou")},
        "history": history,
        "train_wall_s": round(seconds, 2),
    }


def _smp_unet(cfg: DictConfig, num_classes: int) -> nn.Module:
    """smp's Unet on the same timm encoder, decoder widths and input channels as our recipe."""
    import segmentation_models_pytorch as smp

    encoder = cfg.model.encoder
    if not encoder:
        raise SystemExit(
            "error: the segmentation suite compares timm-encoder U-Nets; set model.encoder"
        )
    return smp.Unet(
        encoder_name=f"tu-{encoder}",
        encoder_weights=None,
        in_channels=cfg.model.in_chans,
        classes=num_classes,
        decoder_channels=tuple(cfg.model.decoder_channels),
    )


@torch.no_grad()
def _evaluate_plain(
    model: nn.Module,
    loader: Any,
    limit: int,
    num_classes: int,
    ignore_index: int,
    fg: int,
    device: torch.device,
) -> dict[str, float]:
    """Val Dice of class ``fg`` and mIoU with the metric our module logs."""
    model.eval()
    metric = SegmentationMetrics(num_classes, ignore_index).to(device)
    for i, batch in enumerate(loader):
        if i >= limit:
            break
        logits = model(batch["image"].to(device))
        metric.update(logits.argmax(1), batch["mask"].to(device))
    out = metric.compute()
    return {"dice_fg": float(out["dice_per_class"][fg]), "miou": float(out["miou"])}


def train_ours(cfg: DictConfig, run_dir: Path, fg_key: str) -> dict[str, Any]:
    """``train.py``'s path: seed, ``build_run``, ``trainer.fit`` with the datamodule."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer, module, datamodule = build_run(cfg, run_dir)
    history = _ValHistory({"dice_fg": fg_key, "miou": "val/miou", "loss": "val/loss"})
    trainer.callbacks.append(history)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return _quality_summary(history.rows, time.perf_counter() - start)


def train_smp(cfg: DictConfig, device: torch.device, fg: int) -> dict[str, Any]:
    """smp Unet in a plain loop over a fresh datamodule built from the same config."""
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    meta = datamodule.meta
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    epochs = int(cfg.trainer.max_epochs)
    steps = limit_count(cfg.trainer.get("limit_train_batches"), len(train_loader))
    val_steps = limit_count(cfg.trainer.get("limit_val_batches"), len(val_loader))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # right before model creation
    loop = _segmentation_plain(_smp_unet(cfg, meta["num_classes"]), cfg, device)
    loop.model.train()
    loop.optimizer, loop.scheduler = build_optimizer(loop.model, cfg, steps * epochs, epochs)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        train_loader.sampler.set_epoch(epoch)  # Lightning does this for our side
        loop.model.train()
        for i, batch in enumerate(train_loader):
            if i >= steps:
                break
            loss = loop.step(batch)
            loop.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loop.optimizer.step()
            if loop.scheduler is not None:
                loop.scheduler.step()
        if val_steps:
            row = _evaluate_plain(
                loop.model,
                val_loader,
                val_steps,
                meta["num_classes"],
                meta["ignore_index"],
                fg,
                device,
            )
            history.append({"epoch": epoch, **row})
            print(
                f"  smp epoch {epoch}: dice_fg {row['dice_fg']:.4f} miou {row['miou']:.4f}",
                flush=True,
            )
    return _quality_summary(history, time.perf_counter() - start)


def suite_segmentation(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Membrane quality (ours vs smp) then training throughput in alternating chunks."""
    run_root = args.out / "runs" / "segmentation"
    base = [MEMBRANE_RECIPE, *device_overrides(device), "callbacks.progress=none"]
    if args.epochs is not None:
        base.append(f"trainer.max_epochs={args.epochs}")
    if args.tiny:  # a smoke run: one short epoch on small crops
        base += [
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "data.image_size=[128,128]",
        ]
    base += args.override
    cfg = compose([*base, run_dir_override(run_root / "ours")])
    fg = args.fg_class
    fg_name = list(cfg.data.class_names)[fg]
    fg_key = f"val/dice_{fg_name}"
    settings = {
        "recipe": MEMBRANE_RECIPE,
        "overrides": base,
        "epochs": int(cfg.trainer.max_epochs),
        "seed": int(cfg.seed),
        "encoder": cfg.model.encoder,
        "image_size": image_size_of(cfg),
        "batch_size": int(cfg.data.batch_size),
        "num_workers": int(cfg.data.num_workers),
        "foreground_class": {"index": fg, "name": fg_name, "metric": fg_key},
        "device": str(device),
        "precision": str(cfg.trainer.precision),
        "smp_model": f"smp.Unet(encoder_name='tu-{cfg.model.encoder}', encoder_weights=None, "
        f"classes={cfg.data.num_classes})",
    }
    result: dict[str, Any] = {"settings": settings}

    quality: dict[str, Any] = {}
    if not args.skip_quality:
        print(f"quality: ours ({settings['epochs']} epochs)", flush=True)
        quality["ours"] = train_ours(cfg, run_root / "ours", fg_key)
        print(f"  ours final {quality['ours']['final']}", flush=True)
        gc.collect()
        print(f"quality: smp ({settings['epochs']} epochs)", flush=True)
        quality["smp"] = train_smp(cfg, device, fg)
        o, s = quality["ours"], quality["smp"]
        quality["dice_fg_final_ours_minus_smp"] = o["final"]["dice_fg"] - s["final"]["dice_fg"]
        quality["dice_fg_best_ours_minus_smp"] = (
            o["best"]["dice_fg"]["value"] - s["best"]["dice_fg"]["value"]
        )
        if not args.keep_checkpoints:  # ~170 MB per file; only the metrics matter here
            shutil.rmtree(run_root / "ours" / "checkpoints", ignore_errors=True)
        gc.collect()
    result["quality"] = quality

    # ---- throughput: fresh trainer per chunk; smp runs the same number of steps, same loader.
    chunk_steps = args.chunk_steps or (1 if args.tiny else 6)
    chunk_epochs = args.chunk_epochs
    tcfg = compose(
        [
            *base,
            *LEAN_TRAINER,
            f"trainer.max_epochs={chunk_epochs}",
            f"trainer.limit_train_batches={chunk_steps}",
            run_dir_override(run_root / "throughput"),
        ]
    )
    pl.seed_everything(tcfg.seed, workers=True, verbose=False)
    _, module, datamodule = build_run(tcfg, run_root / "throughput")
    smp_dm = build_datamodule(tcfg.data)
    smp_dm.prepare_data()
    smp_dm.setup("fit")
    smp_loader = smp_dm.train_dataloader()
    steps = min(chunk_steps, len(smp_loader))
    pl.seed_everything(tcfg.seed, workers=True, verbose=False)
    smp_loop = _segmentation_plain(_smp_unet(tcfg, datamodule.meta["num_classes"]), tcfg, device)

    def ours_chunk() -> Measurement:
        trainer = build_trainer(tcfg, run_root / "throughput")
        sync(device)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        sync(device)
        seconds = time.perf_counter() - start
        n = trainer.global_step
        return Measurement(seconds, n * int(tcfg.data.batch_size), n)

    def smp_chunk() -> Measurement:
        sync(device)
        start = time.perf_counter()
        # a fresh loader per chunk, as every trainer.fit asks the data module for one: with
        # persistent workers a reused loader would skip the worker start-up ours pays
        loader = smp_dm.train_dataloader()
        images, n = smp_loop.run(loader, steps, chunk_epochs, set_epoch=loader.sampler.set_epoch)
        return Measurement(time.perf_counter() - start, images, n)

    print(f"throughput: {chunk_epochs} epoch(s) × {steps} steps per chunk", flush=True)
    raw = alternate({"ours": ours_chunk, "smp": smp_chunk}, args.repeats, args.warmup)
    ours, theirs = summarize(raw["ours"]), summarize(raw["smp"])
    result["throughput"] = {
        "ours": ours,
        "smp": theirs,
        "ratio": ours["images_per_s"] / theirs["images_per_s"],
        "ratio_paired_median": paired_ratio(raw["ours"], raw["smp"]),
        "chunk": {
            "epochs": chunk_epochs,
            "steps_per_epoch": steps,
            "trainer_overrides": LEAN_TRAINER,
            "timed": "wall time of trainer.fit (ours) / of the plain loop incl. optimizer "
            "construction (smp); both build a fresh loader of the same config per chunk, "
            "so both start their workers once per chunk",
        },
    }

    # ---- model only: both nn.Modules in the same plain loop on the same pre-collated batches, so
    # any gap here is the networks' own speed, and the rest of the gap above is framework + data.
    batches = collect_batches(smp_loader, steps)
    ours_plain = _segmentation_plain(module.model, tcfg, device)

    def plain_side(loop: PlainLoop) -> Callable[[], Measurement]:
        def run() -> Measurement:
            sync(device)
            start = time.perf_counter()
            images, n = loop.run(batches, len(batches))
            return Measurement(time.perf_counter() - start, images, n)

        return run

    print(f"model only: {len(batches)} pre-collated batches per run, plain loop", flush=True)
    raw_m = alternate(
        {"ours": plain_side(ours_plain), "smp": plain_side(smp_loop)}, args.repeats, args.warmup
    )
    m_ours, m_smp = summarize(raw_m["ours"]), summarize(raw_m["smp"])
    result["model_only"] = {
        "ours": m_ours,
        "smp": m_smp,
        "ratio": m_ours["images_per_s"] / m_smp["images_per_s"],
        "ratio_paired_median": paired_ratio(raw_m["ours"], raw_m["smp"]),
    }
    result["acceptance"] = {
        "throughput_ratio_ge_0.95": result["throughput"]["ratio"] >= 0.95,
    }
    if quality:
        result["acceptance"]["dice_fg_final_ours_ge_smp"] = (
            quality["dice_fg_final_ours_minus_smp"] >= 0
        )
        result["acceptance"]["dice_fg_best_ours_ge_smp"] = (
            quality["dice_fg_best_ours_minus_smp"] >= 0
        )
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def md_segmentation(result: dict[str, Any]) -> str:
    s, q, t = result["settings"], result["quality"], result["throughput"]
    m = result["model_only"]
    lines = md_header("Segmentation benchmark: membrane, ours vs smp", result)
    lines += [
        f"Recipe `{s['recipe']}` (encoder {s['encoder']}, {s['epochs']} epochs, crops "
        f"{s['image_size']}, batch {s['batch_size']}, {s['num_workers']} workers, seed {s['seed']},"
        f" {s['device']}, precision {s['precision']}); smp side: `{s['smp_model']}`.",
        "",
    ]
    if q:
        name = s["foreground_class"]["name"]
        rows = []
        for side in ("ours", "smp"):
            r = q[side]
            rows.append(
                [
                    side,
                    r["final"]["dice_fg"],
                    r["best"]["dice_fg"]["value"],
                    r["best"]["dice_fg"]["epoch"],
                    r["final"]["miou"],
                    r["best"]["miou"]["value"],
                    r["train_wall_s"],
                ]
            )
        lines += [
            "## Quality (validation, last 6 slices)",
            "",
            md_table(
                [
                    "side",
                    f"final Dice {name}",
                    f"best Dice {name}",
                    "best epoch",
                    "final mIoU",
                    "best mIoU",
                    "train wall s",
                ],
                rows,
            ),
            "",
        ]
    lines += [
        "## Training throughput",
        "",
        md_table(
            ["side", "images/s (median)", "steps/s", "timed repeats"],
            [
                [k, t[k]["images_per_s"], t[k].get("steps_per_s", float("nan")), t[k]["repeats"]]
                for k in ("ours", "smp")
            ],
        ),
        "",
        f"Ratio ours/smp of the medians: **{t['ratio']:.3f}** (acceptance ≥ 0.95); median of "
        f"the per-round paired ratios: {t['ratio_paired_median']:.3f}. Each chunk: "
        f"{t['chunk']['epochs']} epoch(s) × {t['chunk']['steps_per_epoch']} steps.",
        "",
        "## Model only (same plain loop, same pre-collated batches)",
        "",
        md_table(
            ["side", "images/s (median)", "timed repeats"],
            [[k, m[k]["images_per_s"], m[k]["repeats"]] for k in ("ours", "smp")],
        ),
        "",
        f"Ratio ours/smp: {m['ratio']:.3f} (paired {m['ratio_paired_median']:.3f}): the "
        "networks' own speed; the throughput ratio above also includes Lightning and the loader.",
        "",
        f"Acceptance: {result['acceptance']}",
        "",
        "### Raw timings: throughput",
        "",
        raw_table({k: t[k]["raw"] for k in ("ours", "smp")}),
        "",
        "### Raw timings: model only",
        "",
        raw_table({f"{k} (model only)": m[k]["raw"] for k in ("ours", "smp")}),
        "",
    ]
    return "\n".join(lines)


# =========================================================================== overhead suite
def suite_overhead(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Per family: Lightning module under trainer.fit vs a plain loop, same pre-collated batches."""
    # fit's fixed setup/teardown measured ~10 ms, so it does not need amortising.
    families = args.families or list(FAMILY_CASES)
    batches = {
        f: args.batches or (2 if args.tiny else FAMILY_CASES[f]().overhead_batches)
        for f in families
    }
    result: dict[str, Any] = {
        "settings": {
            "batches": batches,
            "device": str(device),
            "lightning_input": "pre-collated batches passed as "
            "trainer.fit(train_dataloaders=BatchList(batches))",
            "plain_input": "the same batches",
            "trainer_overrides": LEAN_TRAINER,
        },
        "families": {},
    }
    for family in families:
        result["families"][family] = _overhead_family(family, batches[family], args, device)
        gc.collect()
    return result


def _overhead_family(
    family: str, n_batches: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    case = FAMILY_CASES[family]()
    run_dir = args.out / "runs" / "overhead" / family
    overrides = [
        *case.overrides,
        *device_overrides(device),
        *LEAN_TRAINER,
        "trainer.max_epochs=1",
        "data.num_workers=0",
    ]
    if args.tiny:
        overrides.append("data.batch_size=4")
        if family == "detection":
            overrides.append("data.image_size=128")
    overrides += args.override
    cfg = compose([*overrides, run_dir_override(run_dir)])
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    _, module, datamodule = build_run(cfg, run_dir)
    datamodule.setup("fit")
    batches = collect_batches(datamodule.train_dataloader(), n_batches)
    images_per_pass = sum(case.images_in(b) for b in batches)
    plain = case.plain_loop(module.model, cfg, device)
    peak_gpu: dict[str, float] = {}

    def timed(side: str, fn: Callable[[], Any]) -> tuple[float, dict[str, float]]:
        """Wall seconds of ``fn`` with GPU work flushed, and the process's CPU seconds over the
        same span; notes the side's CUDA peak memory."""
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        seconds = time.perf_counter() - start
        cpu = {"cpu_seconds": round(time.process_time() - cpu_start, 4)}
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**20
            peak_gpu[side] = max(peak_gpu.get(side, 0.0), peak)
        return seconds, cpu

    def lightning_side() -> Measurement:
        trainer = build_trainer(cfg, run_dir)  # fresh per run, as every train.py call has one
        seconds, cpu = timed(
            "lightning", lambda: trainer.fit(module, train_dataloaders=BatchList(batches))
        )
        return Measurement(seconds, images_per_pass, trainer.global_step, cpu)

    def plain_side() -> Measurement:
        done: list[tuple[int, int]] = []
        seconds, cpu = timed("plain", lambda: done.append(plain.run(batches, len(batches))))
        return Measurement(seconds, *done[0], cpu)

    def eval_side() -> Measurement:
        module.to(device).eval()

        def forward_all() -> None:
            with torch.no_grad():
                for b in batches:
                    case.eval_forward(module, b, device)

        seconds, _ = timed("eval", forward_all)
        return Measurement(seconds, images_per_pass, len(batches))

    print(f"overhead/{family}: train, {n_batches} pre-collated batches per run", flush=True)
    raw = alternate({"lightning": lightning_side, "plain": plain_side}, args.repeats, args.warmup)
    lit, pln = summarize(raw["lightning"]), summarize(raw["plain"])
    print(f"overhead/{family}: eval (module.predict_logits, no_grad)", flush=True)
    ev = summarize(alternate({"eval": eval_side}, args.repeats, args.warmup)["eval"])
    # The headline ratio pairs each Lightning run with the plain run next to it in time: the
    # machine's speed drifts by tens of per cent over minutes on a shared VM (seen: the same
    # work took 15.7 s, then 10.6 s), which a ratio of the two sides' medians absorbs unevenly.
    ratio = paired_ratio(raw["lightning"], raw["plain"])
    steps_equal = [r["steps"] for r in raw["lightning"]] == [r["steps"] for r in raw["plain"]]
    if not steps_equal:
        print(f"overhead/{family}: WARNING the two sides took different optimizer steps")
    return {
        "overrides": overrides,
        "model": str(cfg.model.name),
        "data": to_plain(cfg.data.get("synthetic")) or str(cfg.data.root),
        "batch_size": int(cfg.data.batch_size),
        "image_size": image_size_of(cfg),
        "lightning": lit,
        "plain": pln,
        "ratio": ratio,  # median over rounds of the round's Lightning / plain images/s
        "ratio_of_medians": lit["images_per_s"] / pln["images_per_s"],
        # images per CPU-second (all threads of the process): blind to time the virtual machine
        # is not scheduled (steal), which swings wall time on shared machines
        "ratio_cpu_time": cpu_ratio(raw["lightning"], raw["plain"]),
        "same_optimizer_steps": steps_equal,
        "eval": ev,
        "peak_rss_mib": peak_rss_mib(),  # of the whole process so far (ru_maxrss is a maximum)
        "cuda_peak_mib": peak_gpu or None,
        "acceptance_ratio_ge_0.95": ratio >= 0.95,
    }


def md_overhead(result: dict[str, Any]) -> str:
    lines = md_header("Framework overhead: Lightning module vs plain PyTorch loop", result)
    lines += [
        "Both sides train the same `nn.Module` on the same pre-collated batches "
        f"(per family: {result['settings']['batches']}; Lightning gets them as a loader passed to "
        "`trainer.fit(train_dataloaders=...)`), so the ratio is framework cost only.",
        "",
    ]
    rows = []
    for fam, r in result["families"].items():
        rows.append(
            [
                fam,
                r["model"],
                f"{r['batch_size']}×{r['image_size']}",
                r["lightning"]["images_per_s"],
                r["plain"]["images_per_s"],
                r["lightning"].get("steps_per_s", float("nan")),
                r["plain"].get("steps_per_s", float("nan")),
                f"**{r['ratio']:.3f}**",
                f"{r['ratio_of_medians']:.3f}",
                f"{r['ratio_cpu_time']:.3f}",
                r["eval"]["images_per_s"],
                f"{r['peak_rss_mib']:.0f}",
                r["cuda_peak_mib"] or "-",
            ]
        )
    lines += [
        md_table(
            [
                "family",
                "model",
                "batch",
                "Lightning img/s",
                "plain img/s",
                "Lightning steps/s",
                "plain steps/s",
                "ratio (paired)",
                "ratio of medians",
                "CPU-time ratio",
                "eval img/s",
                "peak RSS MiB",
                "CUDA peak MiB",
            ],
            rows,
        ),
        "",
        "ratio (paired) = median over the timed rounds of Lightning img/s ÷ plain img/s of the "
        "two runs of that round, adjacent in time, so drift in the machine's speed cancels; "
        "ratio of medians = Lightning median img/s ÷ plain median img/s; CPU-time ratio = "
        "the latter with images per CPU-second of the process. Acceptance: paired ratio ≥ 0.95 "
        "(framework costs at most 5 %).",
        "",
    ]
    for fam, r in result["families"].items():
        lines += [
            f"### Raw timings: {fam}",
            "",
            raw_table(
                {
                    "lightning": r["lightning"]["raw"],
                    "plain": r["plain"]["raw"],
                    "eval": r["eval"]["raw"],
                }
            ),
            "",
        ]
    return "\n".join(lines)


# =========================================================================== data suite
def _time_loader(
    cfg: DictConfig, case: FamilyCase, max_batches: int | None, epochs: int
) -> Measurement:
    """Iterate a fresh training loader ``epochs`` times, worker start-up included (with the
    configs' ``persistent_workers: true`` the workers start once per timed run, otherwise once
    per epoch); nothing but decode + augment + collate is timed."""
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    images = batches = 0
    first = None
    start = time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if first is None:
                first = time.perf_counter() - start
            images += case.images_in(batch)
            batches += 1
            if max_batches is not None and i + 1 >= max_batches:
                break
    return Measurement(
        time.perf_counter() - start, images, batches, {"first_batch_s": round(first or 0.0, 4)}
    )


def suite_data(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Loader images/s per case and worker count, and model train images/s for comparison."""
    workers = args.workers if args.workers is not None else ([0, 1] if args.tiny else [0, 1, 2])
    result: dict[str, Any] = {
        "settings": {"workers": workers, "device": str(device), "min_images": args.min_images},
        "cases": {},
    }
    for family in args.families or list(DATA_CASES):
        for dcase in DATA_CASES[family]:
            if dcase.needs and not (REPO / dcase.needs).exists():
                print(f"data/{dcase.name}: skipped, {dcase.needs} is missing", flush=True)
                result["cases"][dcase.name] = {"skipped": f"{dcase.needs} missing"}
                continue
            result["cases"][dcase.name] = _data_case(dcase, workers, args, device)
            gc.collect()
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _data_case(
    dcase: DataCase, workers: list[int], args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    fam_case = FAMILY_CASES[dcase.family]()
    run_dir = args.out / "runs" / "data" / dcase.name.replace("/", "_")
    extra = []
    if args.tiny and "membrane" in dcase.name:
        extra = ["data.image_size=[128,128]"]
    elif args.tiny and dcase.family == "detection":
        extra = ["data.image_size=128", "data.batch_size=4"]
    base = [*dcase.overrides, *device_overrides(device), *LEAN_TRAINER, *extra, *args.override]
    cfg = compose([*base, run_dir_override(run_dir)])
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()  # writes synthetic data once, outside the timed runs
    datamodule.setup("fit")
    batch_size = int(cfg.data.batch_size)
    max_batches = 2 if args.tiny else None
    epoch_batches = len(datamodule.train_dataloader())
    epoch_images = batch_size * (epoch_batches if max_batches is None else max_batches)
    # Whole epochs until a timed run covers ≥ min_images (membrane has only 24 per epoch).
    epochs = 1 if args.tiny else max(1, math.ceil(args.min_images / max(epoch_images, 1)))

    def loader_side(w: int) -> Callable[[], Measurement]:
        wcfg = compose([*base, f"data.num_workers={w}", run_dir_override(run_dir)])
        return lambda: _time_loader(wcfg, fam_case, max_batches, epochs)

    print(f"data/{dcase.name}: {epochs} epoch(s) of {epoch_images} images per run", flush=True)
    raw = alternate({f"workers={w}": loader_side(w) for w in workers}, args.repeats, args.warmup)
    loader = {k: summarize(v) for k, v in raw.items()}
    for summary in loader.values():
        summary["first_batch_s"] = median(
            [r["first_batch_s"] for r in summary["raw"] if not r["warmup"]]
        )

    # Model speed on batches of this pipeline: plain training steps, no loader in the loop.
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    _, module, _ = build_run(cfg, run_dir)
    batches = collect_batches(datamodule.train_dataloader(), 2 if args.tiny else 3)
    plain = fam_case.plain_loop(module.model, cfg, device)

    def model_side() -> Measurement:
        sync(device)
        start = time.perf_counter()
        images, steps = plain.run(batches, len(batches))
        return Measurement(time.perf_counter() - start, images, steps)

    print(f"data/{dcase.name}: model train speed", flush=True)
    model = summarize(alternate({"model": model_side}, args.repeats, args.warmup)["model"])
    verdict = {
        k: "loader" if v["images_per_s"] < model["images_per_s"] else "model"
        for k, v in loader.items()
    }
    configured = int(cfg.data.num_workers)
    return {
        "overrides": base,
        "batch_size": batch_size,
        "image_size": image_size_of(cfg),
        "images_per_epoch": epoch_images,
        "epochs_per_run": epochs,
        "loader": loader,
        "model_train": {"model": str(cfg.model.name), "encoder": cfg.model.get("encoder"), **model},
        "configured_workers": configured,
        "bottleneck": verdict,
        "bottleneck_at_configured_workers": verdict.get(f"workers={configured}"),
        "loader_over_model": {
            k: v["images_per_s"] / model["images_per_s"] for k, v in loader.items()
        },
        # the bar: the loader with 2 workers feeds at least the model's training speed
        "loader_2_workers_ge_model": (
            loader["workers=2"]["images_per_s"] >= model["images_per_s"]
            if "workers=2" in loader
            else None
        ),
    }


def md_data(result: dict[str, Any]) -> str:
    lines = md_header("Data pipeline: decode + augment + collate", result)
    lines += [
        "Loader images/s iterate a fresh training loader for whole epochs, worker start-up "
        "included (once per timed run with the configs' `persistent_workers: true`); model "
        "images/s are plain training steps on "
        "pre-collated batches. Bottleneck = the slower of the two at that worker count; on "
        "a CPU-only machine loader workers and the model also share the same cores.",
        "",
    ]
    rows = []
    for name, r in result["cases"].items():
        if "skipped" in r:
            rows.append([name, "skipped", r["skipped"], "", "", "", ""])
            continue
        for k, v in r["loader"].items():
            rows.append(
                [
                    name,
                    k,
                    v["images_per_s"],
                    v["first_batch_s"],
                    r["model_train"]["images_per_s"],
                    r["bottleneck"][k],
                    r["loader_over_model"][k],
                ]
            )
    lines += [
        md_table(
            [
                "case",
                "workers",
                "loader img/s",
                "first batch s",
                "model train img/s",
                "bottleneck",
                "loader/model",
            ],
            rows,
        ),
        "",
    ]
    for name, r in result["cases"].items():
        met = r.get("loader_2_workers_ge_model")
        if met is not None:
            lines.append(
                f"- {name}: loader with 2 workers "
                f"{r['loader']['workers=2']['images_per_s']:.1f} img/s vs model training "
                f"{r['model_train']['images_per_s']:.1f} img/s: "
                f"**{'keeps up' if met else 'does not keep up'}**"
            )
    lines.append("")
    for name, r in result["cases"].items():
        if "skipped" in r:
            continue
        lines += [
            f"### Raw timings: {name}",
            "",
            raw_table(
                {**{k: v["raw"] for k, v in r["loader"].items()}, "model": r["model_train"]["raw"]}
            ),
            "",
        ]
    return "\n".join(lines)


# =========================================================================== detection suite
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]
ULTRALYTICS_SETUP = (
    "python -m venv /tmp/ultra --system-site-packages && /tmp/ultra/bin/pip install ultralytics"
)
# Ultralytics' own trainer, as its users run it; prints one JSON line with the final metrics.
ULTRALYTICS_RUN = """
import json, sys
from pathlib import Path
import ultralytics, torch
from ultralytics import YOLO
kw = json.loads(sys.argv[1])
model = YOLO(kw.pop("model"))
model.train(**kw)
rows = (Path(kw["project"]) / kw["name"] / "results.csv").read_text().strip().splitlines()
last = dict(zip([h.strip() for h in rows[0].split(",")], rows[-1].split(",")))
print("VZ_RESULT " + json.dumps({
    "version": ultralytics.__version__, "torch_threads": torch.get_num_threads(),
    "map": float(last["metrics/mAP50-95(B)"]), "map50": float(last["metrics/mAP50(B)"]),
}))
"""


def bccd_as_yolo(out: Path) -> tuple[Path, dict[str, int]]:
    """BCCD (VOC) train/val written as a YOLO dataset (image links + label files) for
    Ultralytics: the same boxes our reader trains on. Returns the data YAML and image counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two zero-area BCCD boxes, dropped on both sides
        sources = {s: read_voc(REPO / BCCD, s, class_names=BCCD_CLASSES) for s in ("train", "val")}
    for src in sources.values():  # read every image once: both sides start with a warm cache
        for rec in src.records:
            rec.file.read_bytes()
    return write_yolo(sources, out / "bccd_yolo"), {k: len(v.records) for k, v in sources.items()}


def _run_timed(cmd: list[str], log: Path) -> tuple[float, str]:
    """Wall seconds of a whole training command (start-up, every epoch, every validation)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:3])} ... failed; see {log}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def _ultralytics_version(py: str) -> str:
    code = "import ultralytics, torch; print(ultralytics.__version__, torch.__version__)"
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True).stdout
    version, torch_version = out.split()
    return f"ultralytics {version} (torch {torch_version})"


def suite_detection(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """BCCD yolov5n: ours (`train.py experiment=bccd_yolov5n`) vs Ultralytics' YOLOv5nu from
    scratch, each as its users run it, alternating whole training runs of the same length."""
    if not (REPO / BCCD).is_dir():
        raise SystemExit(f"error: the detection suite needs {BCCD}")
    py = args.ultralytics_python
    if py is None and not args.tiny:
        raise SystemExit(
            "error: give --ultralytics-python <python of a venv with ultralytics>; make one "
            f"with: {ULTRALYTICS_SETUP}"
        )
    data_yaml, counts = bccd_as_yolo(args.out)
    epochs = args.epochs or (1 if args.tiny else 3)
    batch, size = (4, 128) if args.tiny else (16, 320)
    ours_images = epochs * (counts["train"] // batch) * batch  # our train loader drops the rest
    if args.tiny:
        ours_images = epochs * 2 * batch
    ultra_images = epochs * counts["train"]
    dev = "cpu" if device.type == "cpu" else "0"

    def ours_cmd(run: str, n_epochs: int, close_mosaic: int | None) -> list[str]:
        cmd = [
            sys.executable,
            str(REPO / "train.py"),
            "experiment=bccd_yolov5n",
            f"trainer.max_epochs={n_epochs}",
            f"data.batch_size={batch}",
            f"data.image_size={size}",
            "task.plots=false",
            "callbacks.progress=none",
            *device_overrides(device),
            f"hydra.run.dir={args.out / 'runs' / 'detection' / run}",
            *args.override,
        ]
        if close_mosaic is not None:
            cmd.append(f"data.augment.close_mosaic={close_mosaic}")
        if args.tiny:
            cmd += ["trainer.limit_train_batches=2", "trainer.limit_val_batches=2"]
        return cmd

    def ultra_cmd(run: str, n_epochs: int, close_mosaic: int | None) -> list[str]:
        kw = {
            "model": "yolov5nu.yaml",  # built from the YAML: no weights, no download
            "data": str(data_yaml),
            "epochs": n_epochs,
            "imgsz": size,
            "batch": batch,
            "device": dev,
            "workers": 2,
            "seed": 0,
            "pretrained": False,
            "plots": False,
            "project": str(args.out / "runs" / "detection"),
            "name": run,
            "exist_ok": True,
            "verbose": False,
        }
        if close_mosaic is not None:
            kw["close_mosaic"] = close_mosaic
        return [py, "-c", ULTRALYTICS_RUN, json.dumps(kw)]

    def side(name: str, build: Callable[..., list[str]], images: int) -> Callable[[], Measurement]:
        def run() -> Measurement:
            seconds, _ = _run_timed(build(name, epochs, 0), args.out / "logs" / f"{name}.log")
            return Measurement(seconds, images, epochs)

        return run

    sides = {"ours": side("ours", ours_cmd, ours_images)}
    if py is not None:
        sides["ultralytics"] = side("ultralytics", ultra_cmd, ultra_images)
    print(f"detection: throughput, {epochs}-epoch runs, mosaic on throughout", flush=True)
    raw = alternate(sides, args.repeats, args.warmup)
    throughput = {k: summarize(v) for k, v in raw.items()}
    result: dict[str, Any] = {
        "settings": {
            "data": f"{BCCD} (VOC train {counts['train']} / val {counts['val']} images)",
            "image_size": size,
            "batch_size": batch,
            "epochs_per_timed_run": epochs,
            "ours": " ".join(ours_cmd("ours", epochs, 0)[1:]),
            "ultralytics": None if py is None else json.loads(ultra_cmd("u", epochs, 0)[3]),
            "ultralytics_version": None if py is None else _ultralytics_version(py),
            "images_per_run": {"ours": ours_images, "ultralytics": ultra_images},
        },
        "throughput": throughput,
    }
    if "ultralytics" in throughput:
        result["throughput_ratio"] = (
            throughput["ours"]["images_per_s"] / throughput["ultralytics"]["images_per_s"]
        )
        result["throughput_ratio_paired"] = paired_ratio(raw["ours"], raw["ultralytics"])
    if args.quality_epochs:
        result["quality"] = _detection_quality(args, ours_cmd, ultra_cmd, py)
    return result


def _detection_quality(
    args: argparse.Namespace, ours_cmd: Callable, ultra_cmd: Callable, py: str | None
) -> dict[str, Any]:
    """One full run per side with each tool's own recipe (mosaic closing included)."""
    n = args.quality_epochs
    out: dict[str, Any] = {"epochs": n}
    print(f"detection: quality, ours ({n} epochs)", flush=True)
    seconds, _ = _run_timed(ours_cmd("ours_quality", n, None), args.out / "logs" / "ours_q.log")
    metrics = json.loads(
        (args.out / "runs" / "detection" / "ours_quality" / "metrics.json").read_text()
    )["metrics"]
    out["ours"] = {"map": metrics["val/map"], "map50": metrics["val/map50"], "seconds": seconds}
    if py is not None:
        print(f"detection: quality, ultralytics ({n} epochs)", flush=True)
        seconds, stdout = _run_timed(
            ultra_cmd("ultralytics_quality", n, None), args.out / "logs" / "ultra_q.log"
        )
        line = next(x for x in stdout.splitlines() if x.startswith("VZ_RESULT "))
        out["ultralytics"] = {**json.loads(line.split(" ", 1)[1]), "seconds": seconds}
    return out


def md_detection(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = md_header("Detection: visionzoo yolov5n vs Ultralytics YOLOv5nu on BCCD", result)
    lines += [
        f"Data: {s['data']}; {s['image_size']} px, batch {s['batch_size']}, from scratch, CPU. "
        f"Each timed run is a whole `{s['epochs_per_timed_run']}`-epoch training command "
        "(start-up, mosaic on in every epoch, a validation after each epoch), the two sides "
        "alternating. Images/s count the training images of the run: ours drops the last "
        "incomplete batch of an epoch, Ultralytics does not.",
        "",
        f"Ours: `python {s['ours']}`  ",
        f"Ultralytics ({s.get('ultralytics_version')}): "
        f"`YOLO('yolov5nu.yaml').train(**{s['ultralytics']})`",
        "",
    ]
    t = result["throughput"]
    rows = [[k, v["images_per_s"], v["seconds_median"], v["repeats"]] for k, v in t.items()]
    lines += [md_table(["side", "train img/s", "seconds per run", "runs"], rows), ""]
    if "throughput_ratio" in result:
        lines += [
            f"Ratio ours / Ultralytics: **{result['throughput_ratio']:.3f}** "
            f"(paired {result['throughput_ratio_paired']:.3f}).",
            "",
        ]
    if "quality" in result:
        q = result["quality"]
        qrows = [
            [k, v["map"], v["map50"], v["seconds"]] for k, v in q.items() if isinstance(v, dict)
        ]
        lines += [
            f"Quality after {q['epochs']} epochs (each tool's own recipe and mAP code):",
            "",
            md_table(["side", "val mAP50-95", "val mAP50", "wall s"], qrows),
            "",
        ]
    lines += ["### Raw timings", "", raw_table({k: v["raw"] for k, v in t.items()}), ""]
    return "\n".join(lines)


# =========================================================================== CLI
RUNNERS: dict[
    str,
    tuple[
        Callable[[argparse.Namespace, torch.device], dict[str, Any]],
        Callable[[dict[str, Any]], str],
    ],
] = {
    "segmentation": (suite_segmentation, md_segmentation),
    "overhead": (suite_overhead, md_overhead),
    "data": (suite_data, md_data),
    "detection": (suite_detection, md_detection),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("suite", choices=SUITES)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench_out"),
        help="folder for <suite>.json / <suite>.md (default: bench_out)",
    )
    p.add_argument("--tiny", action="store_true", help="a few steps only (smoke test, < 60 s)")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per side (default 5; 4 for segmentation; 1 with --tiny)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="warm-up rounds before the timed ones (default 1; 0 with --tiny)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for our side's config (repeatable)",
    )
    g = p.add_argument_group("segmentation")
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default: the recipe's trainer.max_epochs); detection: epochs "
        "per timed run (default 3)",
    )
    g.add_argument(
        "--chunk-steps",
        type=int,
        default=None,
        help="training steps per epoch in a throughput chunk (default 6 = one epoch)",
    )
    g.add_argument("--chunk-epochs", type=int, default=1, help="epochs per throughput chunk")
    g.add_argument("--fg-class", type=int, default=1, help="foreground class index (1 = cell)")
    g.add_argument("--skip-quality", action="store_true", help="throughput phase only")
    g.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep our run's checkpoints under <out>/runs",
    )
    g = p.add_argument_group("detection")
    g.add_argument(
        "--ultralytics-python",
        default=os.environ.get("VZ_ULTRALYTICS_PYTHON"),
        help="python of a separate venv with ultralytics (env VZ_ULTRALYTICS_PYTHON); "
        "without it (--tiny only) just our side runs",
    )
    g.add_argument(
        "--quality-epochs",
        type=int,
        default=0,
        help="also one full run per side with each recipe (60 = the issue's; default 0 = off)",
    )
    g = p.add_argument_group("overhead / data")
    g.add_argument("--families", nargs="+", default=None, help="families to run (default all)")
    g.add_argument(
        "--batches",
        type=int,
        default=None,
        help="overhead: pre-collated batches per timed run (default: the family's, "
        "12 segmentation, 36 detection)",
    )
    g.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="data: loader worker counts (default 0 1 2)",
    )
    g.add_argument(
        "--min-images",
        type=int,
        default=192,
        help="data: images per timed loader run at least (whole epochs)",
    )
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.tiny else {"segmentation": 4, "detection": 3}.get(args.suite, 5)
    if args.warmup is None:  # detection: each run is a fresh process on a warmed file cache
        args.warmup = 0 if args.tiny or args.suite == "detection" else 1
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be ≥ 1 and --warmup ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    # Data paths in the configs (../shared/data) are relative to the repository root.
    os.chdir(REPO)
    args.out.mkdir(parents=True, exist_ok=True)
    quiet()
    device = resolve_device(args.device)
    command = "python scripts/benchmark.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv)
    )
    start, load_start = time.perf_counter(), load_average()
    run, to_md = RUNNERS[args.suite]
    result = {
        "suite": args.suite,
        "command": command,
        "tiny": args.tiny,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "machine": machine_info(),
        "load_average_start": load_start,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    result.update(run(args, device))
    result["runtime_s"] = round(time.perf_counter() - start, 1)
    result["load_average_end"] = load_average()
    json_path, md_path = args.out / f"{args.suite}.json", args.out / f"{args.suite}.md"
    json_path.write_text(json.dumps(result, indent=1, default=str))
    md_path.write_text(to_md(result) + "\n")
    print(f"wrote {json_path} and {md_path} ({result['runtime_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
