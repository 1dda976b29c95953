"""Detection in the benchmarks: the plain-loop reference step (the module's own
``training_losses``, with clipping and the weight EMA done by hand), the overhead and data
cases, and the ``detection`` suite: BCCD yolov5n, ours (``train.py experiment=bccd_yolov5n``)
against Ultralytics' YOLOv5nu run from a separate virtual environment
(``--ultralytics-python``), each as its users run it: alternating whole training commands of the
same length, and optionally one full run per side for mAP (``--quality-epochs 60``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn as nn
from omegaconf import DictConfig

from visionzoo.bench.cases import DataCase, FamilyBench, Suite
from visionzoo.bench.harness import (
    REPO,
    Batch,
    Measurement,
    PlainLoop,
    alternate,
    device_overrides,
    paired_ratio,
    summarize,
)
from visionzoo.bench.report import md_header, md_table, raw_table
from visionzoo.core.ema import ModelEMA
from visionzoo.detection import bench_rcnn
from visionzoo.detection.formats import read_voc, write_yolo
from visionzoo.detection.module import training_losses, unit_images

BCCD = "../shared/data/bccd"
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


class DetectionPlainLoop(PlainLoop):
    """``training_losses(model, batch)["loss"]`` of ``DetectionModule``, with the recipe's
    per-step work done by hand: gradient-norm clipping and the weight EMA update (the overhead
    run steps every batch)."""

    def __init__(self, model: nn.Module, cfg: DictConfig, device: torch.device) -> None:
        super().__init__(model, cfg, device)
        ema = cfg.task.get("ema")
        self.ema = ModelEMA(self.model, **ema).to(device) if ema else None
        self.clip = cfg.task.get("grad_clip")

    def loss(self, batch: Batch) -> torch.Tensor:
        return training_losses(self.model, batch)["loss"]

    def before_step(self) -> None:
        if self.clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.model)


def _eval_forward(module: pl.LightningModule, batch: Batch, device: torch.device) -> Any:
    return module.eval_model(unit_images(batch["image"].to(device, non_blocking=True)))


# ------------------------------------------------------------------- ours vs Ultralytics
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


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The comparisons ``--compare`` names, each under its own key."""
    if not (REPO / BCCD).is_dir():
        raise SystemExit(f"error: the detection suite needs {BCCD}")
    result: dict[str, Any] = {"compare": list(args.compare)}
    if "ultralytics" in args.compare:
        result.update(run_ultralytics(args, device))
    if "torchvision" in args.compare:
        result["faster_rcnn"] = bench_rcnn.run(args, device)
    return result


def run_ultralytics(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """BCCD yolov5n: ours (`train.py experiment=bccd_yolov5n`) vs Ultralytics' YOLOv5nu from
    scratch, each as its users run it, alternating whole training runs of the same length."""
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
        result["quality"] = _quality(args, ours_cmd, ultra_cmd, py)
    return result


def _quality(
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


def markdown(result: dict[str, Any]) -> str:
    lines = md_header(
        "Detection on BCCD: " + ", ".join(_TITLES[c] for c in result["compare"]), result
    )
    if "settings" in result:
        lines += _markdown_ultralytics(result)
    if "faster_rcnn" in result:
        lines += bench_rcnn.markdown_lines(result["faster_rcnn"])
    return "\n".join(lines)


_TITLES = {
    "ultralytics": "visionzoo yolov5n vs Ultralytics YOLOv5nu",
    "torchvision": "Faster R-CNN vs torchvision's training loop",
}


def _markdown_ultralytics(result: dict[str, Any]) -> list[str]:
    s = result["settings"]
    lines = ["## yolov5n: ours vs Ultralytics YOLOv5nu", ""]
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
    return lines


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--compare",
        nargs="+",
        choices=("ultralytics", "torchvision"),
        default=["ultralytics"],
        help="ultralytics: yolov5n vs Ultralytics' YOLOv5nu (default); torchvision: "
        "experiment=bccd_faster_rcnn vs torchvision's plain loop on the same network and batches "
        "(--epochs: its run length, default 8)",
    )
    group.add_argument(
        "--ultralytics-python",
        default=os.environ.get("VZ_ULTRALYTICS_PYTHON"),
        help="python of a separate venv with ultralytics (env VZ_ULTRALYTICS_PYTHON); "
        "without it (--tiny only) just our side runs",
    )
    group.add_argument(
        "--quality-epochs",
        type=int,
        default=0,
        help="also one full run per side with each recipe (60 = the issue's; default 0 = off)",
    )


BENCH = FamilyBench(
    # synthetic shapes + yolov5n; one optimizer step per batch on both sides
    overrides=["task=detection", "task.nominal_batch_size=${data.batch_size}", "task.plots=false"],
    plain_loop=DetectionPlainLoop,
    eval_forward=_eval_forward,
    overhead_batches=36,  # 8 × 256² steps take ≈ 0.25 s on 2 CPU cores
    tiny=["data.image_size=128"],
    data_cases=[
        # Real 640×480 JPEGs at 640 px: the acceptance case (mosaic vs yolov5n at 640).
        DataCase(
            "detection/bccd-mosaic-640",
            ["task=detection", "data=bccd", "data.image_size=640"],
            tiny=["data.image_size=128", "data.batch_size=4"],
            needs=BCCD,
        ),
        DataCase(
            "detection/bccd-mosaic-mixup-640",
            ["task=detection", "data=bccd", "data.image_size=640", "data.augment.mixup=1.0"],
            tiny=["data.image_size=128", "data.batch_size=4"],
            needs=BCCD,
        ),
    ],
    suite=Suite(
        run=run,
        markdown=markdown,
        help="BCCD yolov5n: ours vs Ultralytics' YOLOv5nu, alternating whole training runs "
        "(--epochs: epochs per timed run, default 3)",
        repeats=3,
        warmup=0,  # each run is a fresh process on a warmed file cache
        add_arguments=add_arguments,
    ),
)
