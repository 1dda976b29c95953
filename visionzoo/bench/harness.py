"""The timing harness every benchmark suite shares: machine facts, configs, devices, alternating
timed runs and their summaries, and the plain PyTorch loop each family's reference step plugs
into. Nothing here names a family; families describe themselves in ``visionzoo.bench.cases``."""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import math
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torch.nn as nn
from omegaconf import DictConfig

from visionzoo.cli import CONFIG_DIR, build_datamodule, to_plain
from visionzoo.core.module import VisionModule, resolve_channels_last
from visionzoo.core.utils import call_spec

REPO = Path(__file__).resolve().parents[2]  # config data paths (../shared/data) start here
Batch = Any
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


# ------------------------------------------------------------------------------ machine
def quiet() -> None:
    """Silence Lightning's info banners and warnings (worker counts, missing val loop, ...): they
    are expected here and would bury the results."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    """What the figures were measured on; timings mean little without it. ``packages``: the
    reference implementations the families compare against (``None`` when not installed)."""
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
        "albumentations": package_version("albumentations"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info.update({name: package_version(name) for name in packages})
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


# ------------------------------------------------------------------------------- config
def compose(overrides: Sequence[str], run_dir: Path | None = None) -> DictConfig:
    """The ``train`` config with ``overrides``, as ``python train.py <overrides>`` composes it;
    ``run_dir`` sets ``paths.run_dir``, which Hydra's runtime sets for ``train.py``."""
    extra = [] if run_dir is None else [f"paths.run_dir='{run_dir}'"]
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra.compose("train", overrides=[*overrides, *extra])


def fit_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """A fresh data module of ``cfg.data``, its data prepared (a synthetic set written once,
    before any timed run) and set up for training."""
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def image_size_of(cfg: DictConfig) -> list[int]:
    size = cfg.data.image_size
    return [int(size), int(size)] if isinstance(size, int) else list(size)


def limit_count(limit: int | float | None, n: int) -> int:
    """Batches Lightning runs for ``limit_*_batches=limit`` out of ``n`` (int = count,
    float = fraction)."""
    if limit is None:
        return n
    if isinstance(limit, float):
        return int(n * limit)
    return min(n, int(limit))


# ------------------------------------------------------------------------------- device
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


def to_device(data: Any, device: torch.device) -> Any:
    """Every tensor of a (nested dict / list / tuple) batch on ``device``, as Lightning moves
    batches for the module; anything else is left as it is."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=True)
    if isinstance(data, dict):
        return {k: to_device(v, device) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(to_device(v, device) for v in data)
    return data


# --------------------------------------------------------------------------------- timing
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


# -------------------------------------------------------------------------------- batches
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


# ----------------------------------------------------------------------------- plain loop
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


class PlainLoop:
    """A plain PyTorch training loop: forward, loss, backward, optimizer and scheduler step per
    batch, nothing else. A family supplies ``loss``, calling the very function its module's
    training step calls; ``run`` builds a fresh optimizer and schedule like every
    ``trainer.fit`` call does (in the timed region, as fit does)."""

    image_keys = VisionModule.image_keys  # the batch entries laid out channels-last

    def __init__(self, model: nn.Module, cfg: DictConfig, device: torch.device) -> None:
        self.model = model.to(device)
        self.cfg = cfg
        self.device = device
        self.autocast = autocast_for(cfg, device)
        # model.channels_last as VisionModule.setup resolves it
        layout = cfg.model.get("channels_last", "auto")
        self.channels_last = resolve_channels_last(layout, model, device.type == "cuda")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def to_device(self, batch: Batch) -> Batch:
        """The batch on the device, images in the layout the model was set up for (what
        Lightning's transfer and ``VisionModule.on_after_batch_transfer`` do)."""
        batch = to_device(batch, self.device)
        if self.channels_last:
            for key in self.image_keys:
                batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        return batch

    def loss(self, batch: Batch) -> torch.Tensor:
        """The loss to backpropagate for one batch already on the device."""
        raise NotImplementedError

    def step(self, batch: Batch) -> torch.Tensor:
        batch = self.to_device(batch)
        with self.autocast():
            return self.loss(batch)

    @staticmethod
    def images_in(batch: Batch) -> int:
        """Images in a collated batch."""
        return int(batch["image"].shape[0])

    def before_step(self) -> None:
        """Between backward and the optimizer step (e.g. gradient clipping)."""

    def after_step(self) -> None:
        """After the optimizer step (e.g. a weight EMA)."""

    def run(
        self,
        batches: Iterator[Batch] | Sequence[Batch],
        steps: int,
        epochs: int = 1,
        set_epoch: Callable[[int], None] | None = None,
        end_epoch: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """Train ``epochs`` passes of at most ``steps`` batches, calling ``end_epoch(epoch)``
        after each (an evaluation, say); returns (images, steps)."""
        self.optimizer, self.scheduler = build_optimizer(
            self.model, self.cfg, steps * epochs, epochs
        )
        images = done = 0
        for epoch in range(epochs):
            if set_epoch is not None:
                set_epoch(epoch)
            self.model.train()
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
            if end_epoch is not None:
                end_epoch(epoch)
        sync(self.device)
        return images, done


def timed_plain(loop: PlainLoop, batches: Sequence[Batch]) -> Callable[[], Measurement]:
    """A side for ``alternate``: one pass of ``loop`` over pre-collated ``batches``."""

    def run() -> Measurement:
        sync(loop.device)
        start = time.perf_counter()
        images, steps = loop.run(batches, len(batches))
        return Measurement(time.perf_counter() - start, images, steps)

    return run
