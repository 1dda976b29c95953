"""Segmentation in the benchmarks: the plain-loop reference step (the module's own
``training_loss``), the overhead and data cases, and the ``segmentation`` suite: the membrane
acceptance run, ``experiment=membrane_unet`` trained by ``trainer.fit`` exactly as ``train.py``
does, next to smp's ``Unet`` on the same timm encoder trained by a plain PyTorch loop with the
same data loader, loss, optimizer, schedule, epochs and seed; val Dice of the foreground class
and mIoU of both, then training images/s of both in alternating timed chunks."""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
from omegaconf import DictConfig

from visionzoo.bench.cases import DataCase, FamilyBench, Suite
from visionzoo.bench.harness import (
    LEAN_TRAINER,
    Batch,
    Measurement,
    PlainLoop,
    alternate,
    collect_batches,
    compose,
    device_overrides,
    fit_datamodule,
    image_size_of,
    limit_count,
    paired_ratio,
    peak_rss_mib,
    summarize,
    sync,
    timed_plain,
)
from visionzoo.bench.report import md_header, md_table, raw_table
from visionzoo.cli import build_run, build_trainer, to_plain
from visionzoo.losses.combined import build_loss
from visionzoo.segmentation.inference import logits_at_labels
from visionzoo.segmentation.metrics import SegmentationMetrics
from visionzoo.segmentation.module import training_loss

MEMBRANE_RECIPE = "experiment=membrane_unet"
SIDES = ("ours", "smp")


class SegmentationPlainLoop(PlainLoop):
    """``training_loss`` of ``SegmentationModule``, with the configured loss."""

    def __init__(self, model: nn.Module, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(model, cfg, device)
        self.loss_fn = build_loss(to_plain(cfg.loss)).to(device)

    def loss(self, batch: Batch) -> torch.Tensor:
        return training_loss(self.model, self.loss_fn, batch)


def _eval_forward(module: pl.LightningModule, batch: Batch, device: torch.device) -> Any:
    return module.predict_logits(batch["image"].to(device, non_blocking=True))


# ------------------------------------------------------------------------------- quality
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


def _quality_summary(
    history: list[dict[str, float]], seconds: float, images: int, steps: int
) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {
        "images": images,
        "steps": steps,
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
    model: nn.Module, loader: Any, limit: int, meta: dict[str, Any], fg: int, device: torch.device
) -> dict[str, float]:
    """Val Dice of class ``fg`` and mIoU with the metric our module logs."""
    model.eval()
    metric = SegmentationMetrics(meta["num_classes"], meta["ignore_index"]).to(device)
    for i, batch in enumerate(loader):
        if i >= limit:
            break
        mask = batch["mask"].to(device)
        logits = logits_at_labels(model(batch["image"].to(device)), mask, batch.get("mask_size"))
        metric.update(logits.argmax(1), mask)
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
    steps = trainer.global_step
    seconds = time.perf_counter() - start
    return _quality_summary(history.rows, seconds, steps * int(cfg.data.batch_size), steps)


def train_smp(cfg: DictConfig, device: torch.device, fg: int) -> dict[str, Any]:
    """smp Unet in the plain loop over a fresh datamodule built from the same config, evaluated
    after every epoch."""
    datamodule = fit_datamodule(cfg)
    meta = datamodule.meta
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    epochs = int(cfg.trainer.max_epochs)
    steps = limit_count(cfg.trainer.get("limit_train_batches"), len(train_loader))
    val_steps = limit_count(cfg.trainer.get("limit_val_batches"), len(val_loader))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # right before model creation
    loop = SegmentationPlainLoop(_smp_unet(cfg, meta["num_classes"]), cfg, device)
    history: list[dict[str, float]] = []

    def evaluate(epoch: int) -> None:
        if not val_steps:
            return
        row = _evaluate_plain(loop.model, val_loader, val_steps, meta, fg, device)
        history.append({"epoch": epoch, **row})
        print(f"  smp epoch {epoch}: dice_fg {row['dice_fg']:.4f} miou {row['miou']:.4f}")

    start = time.perf_counter()
    # set_epoch: Lightning does this for our side
    images, done = loop.run(
        train_loader, steps, epochs, set_epoch=train_loader.sampler.set_epoch, end_epoch=evaluate
    )
    return _quality_summary(history, time.perf_counter() - start, images, done)


def _quality(
    args: argparse.Namespace,
    cfg: DictConfig,
    run_root: Path,
    fg: int,
    fg_key: str,
    device: torch.device,
) -> dict[str, Any]:
    """Both sides trained for the recipe's epochs, validated after each."""
    epochs = int(cfg.trainer.max_epochs)
    print(f"quality: ours ({epochs} epochs)", flush=True)
    quality = {"ours": train_ours(cfg, run_root / "ours", fg_key)}
    print(f"  ours final {quality['ours']['final']}", flush=True)
    gc.collect()
    print(f"quality: smp ({epochs} epochs)", flush=True)
    quality["smp"] = train_smp(cfg, device, fg)
    o, s = quality["ours"], quality["smp"]
    quality["dice_fg_final_ours_minus_smp"] = o["final"]["dice_fg"] - s["final"]["dice_fg"]
    quality["dice_fg_best_ours_minus_smp"] = (
        o["best"]["dice_fg"]["value"] - s["best"]["dice_fg"]["value"]
    )
    if not args.keep_checkpoints:  # ~170 MB per file; only the metrics matter here
        shutil.rmtree(run_root / "ours" / "checkpoints", ignore_errors=True)
    gc.collect()
    return quality


# ------------------------------------------------------------------------------- the suite
def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
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
    cfg = compose(base, run_root / "ours")
    fg = args.fg_class
    fg_name = list(cfg.data.class_names)[fg]
    fg_key = f"val/dice_{fg_name}"
    result: dict[str, Any] = {
        "settings": {
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
            "smp_model": f"smp.Unet(encoder_name='tu-{cfg.model.encoder}', "
            f"encoder_weights=None, classes={cfg.data.num_classes})",
        }
    }
    quality = {} if args.skip_quality else _quality(args, cfg, run_root, fg, fg_key, device)
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
        ],
        run_root / "throughput",
    )
    pl.seed_everything(tcfg.seed, workers=True, verbose=False)
    _, module, datamodule = build_run(tcfg, run_root / "throughput")
    smp_dm = fit_datamodule(tcfg)
    smp_loader = smp_dm.train_dataloader()
    steps = min(chunk_steps, len(smp_loader))
    pl.seed_everything(tcfg.seed, workers=True, verbose=False)
    smp_loop = SegmentationPlainLoop(_smp_unet(tcfg, datamodule.meta["num_classes"]), tcfg, device)

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
    result["throughput"] = {
        **_compared(raw),
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
    ours_plain = SegmentationPlainLoop(module.model, tcfg, device)
    print(f"model only: {len(batches)} pre-collated batches per run, plain loop", flush=True)
    sides = {"ours": timed_plain(ours_plain, batches), "smp": timed_plain(smp_loop, batches)}
    result["model_only"] = _compared(alternate(sides, args.repeats, args.warmup))
    result["acceptance"] = {"throughput_ratio_ge_0.95": result["throughput"]["ratio"] >= 0.95}
    if not args.tiny:  # whole runs: too long for the smoke run
        result["end_to_end"] = _end_to_end(args, base, run_root / "e2e", device, fg, fg_key)
        result["acceptance"]["end_to_end_ratio_ge_0.95"] = result["end_to_end"]["ratio"] >= 0.95
    if quality:
        result["acceptance"]["dice_fg_final_ours_ge_smp"] = (
            quality["dice_fg_final_ours_minus_smp"] >= 0
        )
        result["acceptance"]["dice_fg_best_ours_ge_smp"] = (
            quality["dice_fg_best_ours_minus_smp"] >= 0
        )
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _end_to_end(
    args: argparse.Namespace,
    base: list[str],
    folder: Path,
    device: torch.device,
    fg: int,
    fg_key: str,
) -> dict[str, Any]:
    """Whole short runs, alternating sides: ours is ``train.py``'s path with its defaults
    (validation each epoch, best + last checkpoints, plots, CSV logger), built afresh each
    time; smp is the plain loop over a fresh data module, validated after each epoch."""
    epochs = args.e2e_epochs
    cfg = compose([*base, f"trainer.max_epochs={epochs}"], folder)
    runs = itertools.count()

    def ours() -> Measurement:
        run_dir = folder / f"ours{next(runs)}"
        sync(device)
        start = time.perf_counter()
        summary = train_ours(
            compose([*base, f"trainer.max_epochs={epochs}"], run_dir), run_dir, fg_key
        )
        sync(device)
        seconds = time.perf_counter() - start
        shutil.rmtree(run_dir, ignore_errors=True)
        return Measurement(seconds, summary["images"], summary["steps"])

    def smp() -> Measurement:
        sync(device)
        start = time.perf_counter()
        summary = train_smp(cfg, device, fg)
        sync(device)
        return Measurement(time.perf_counter() - start, summary["images"], summary["steps"])

    print(f"end to end: {epochs}-epoch runs with validation each epoch", flush=True)
    out = _compared(alternate({"ours": ours, "smp": smp}, args.repeats, args.warmup))
    out["epochs"] = epochs
    return out


def _compared(raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Both sides' summaries and their ratio (of medians, and paired per round)."""
    ours, smp = summarize(raw["ours"]), summarize(raw["smp"])
    return {
        "ours": ours,
        "smp": smp,
        "ratio": ours["images_per_s"] / smp["images_per_s"],
        "ratio_paired_median": paired_ratio(raw["ours"], raw["smp"]),
    }


def _end_to_end_lines(e: dict[str, Any] | None) -> list[str]:
    """The report's end-to-end section (absent from --tiny runs)."""
    if not e:
        return []
    return [
        "## End to end (train.py's defaults vs smp's loop, both validated each epoch)",
        "",
        md_table(
            ["side", "images/s (median)", "timed runs"],
            [[k, e[k]["images_per_s"], e[k]["repeats"]] for k in SIDES],
        ),
        "",
        f"Ratio ours/smp of the medians: **{e['ratio']:.3f}** (goal ≥ 0.95; paired "
        f"{e['ratio_paired_median']:.3f}). Each run: {e['epochs']} epochs from a fresh model "
        "and data module; ours includes validation, best and last checkpoints (written "
        "asynchronously), the task's plots and the CSV logger, smp its per-epoch validation.",
        "",
    ]


def markdown(result: dict[str, Any]) -> str:
    s, q, t, m = result["settings"], result["quality"], result["throughput"], result["model_only"]
    e = result.get("end_to_end")
    lines = md_header("Segmentation benchmark: membrane, ours vs smp", result)
    lines += [
        f"Recipe `{s['recipe']}` (encoder {s['encoder']}, {s['epochs']} epochs, crops "
        f"{s['image_size']}, batch {s['batch_size']}, {s['num_workers']} workers, seed {s['seed']},"
        f" {s['device']}, precision {s['precision']}); smp side: `{s['smp_model']}`.",
        "",
    ]
    if q:
        name = s["foreground_class"]["name"]
        head = ["side", f"final Dice {name}", f"best Dice {name}", "best epoch"]
        head += ["final mIoU", "best mIoU", "train wall s"]
        rows = [
            [side, q[side]["final"]["dice_fg"], q[side]["best"]["dice_fg"]["value"]]
            + [q[side]["best"]["dice_fg"]["epoch"], q[side]["final"]["miou"]]
            + [q[side]["best"]["miou"]["value"], q[side]["train_wall_s"]]
            for side in SIDES
        ]
        lines += ["## Quality (validation, last 6 slices)", "", md_table(head, rows), ""]
    steps = [[k, t[k].get("steps_per_s", float("nan"))] for k in SIDES]
    lines += [
        "## Training throughput",
        "",
        md_table(
            ["side", "images/s (median)", "steps/s", "timed repeats"],
            [[k, t[k]["images_per_s"], per_s, t[k]["repeats"]] for k, per_s in steps],
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
            [[k, m[k]["images_per_s"], m[k]["repeats"]] for k in SIDES],
        ),
        "",
        f"Ratio ours/smp: {m['ratio']:.3f} (paired {m['ratio_paired_median']:.3f}): the "
        "networks' own speed; the throughput ratio above also includes Lightning and the loader.",
        "",
        *_end_to_end_lines(e),
        f"Acceptance: {result['acceptance']}",
        "",
        "### Raw timings: throughput",
        "",
        raw_table({k: t[k]["raw"] for k in SIDES}),
        "",
        *(
            [
                "### Raw timings: end to end",
                "",
                raw_table({f"{k} (end to end)": e[k]["raw"] for k in SIDES}),
                "",
            ]
            if e
            else []
        ),
        "### Raw timings: model only",
        "",
        raw_table({f"{k} (model only)": m[k]["raw"] for k in SIDES}),
        "",
    ]
    return "\n".join(lines)


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--chunk-steps",
        type=int,
        default=None,
        help="training steps per epoch in a throughput chunk (default 6 = one epoch)",
    )
    group.add_argument("--chunk-epochs", type=int, default=1, help="epochs per throughput chunk")
    group.add_argument(
        "--e2e-epochs", type=int, default=2, help="epochs per end-to-end run (validated each)"
    )
    group.add_argument("--fg-class", type=int, default=1, help="foreground class index (1 = cell)")
    group.add_argument("--skip-quality", action="store_true", help="throughput phase only")
    group.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep our run's checkpoints under <out>/runs",
    )


BENCH = FamilyBench(
    overrides=["task=segmentation"],  # synthetic_segmentation + unet (original) defaults
    plain_loop=SegmentationPlainLoop,
    eval_forward=_eval_forward,
    data_cases=[
        DataCase("segmentation/synthetic", ["task=segmentation"]),
        DataCase(
            "segmentation/membrane",
            [MEMBRANE_RECIPE],
            tiny=["data.image_size=[128,128]"],
            needs="../shared/data/membrane",
        ),
    ],
    suite=Suite(
        run=run,
        markdown=markdown,
        help="membrane: ours vs smp's Unet, quality then throughput (--epochs: training "
        "epochs, default the recipe's trainer.max_epochs)",
        repeats=4,
        add_arguments=add_arguments,
    ),
    packages=("segmentation_models_pytorch",),
)
