"""``data`` suite: the input pipeline alone (decode + augment + collate) per dataset case and
worker count, and whether the loader or the model limits training speed."""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from visionzoo.bench.cases import DataCase, FamilyBench, Suite, family_benches
from visionzoo.bench.harness import (
    LEAN_TRAINER,
    REPO,
    Measurement,
    alternate,
    collect_batches,
    compose,
    device_overrides,
    fit_datamodule,
    image_size_of,
    median,
    peak_rss_mib,
    summarize,
    timed_plain,
)
from visionzoo.bench.report import md_header, md_table, raw_table
from visionzoo.cli import build_run


def _time_loader(
    cfg: DictConfig, bench: FamilyBench, max_batches: int | None, epochs: int
) -> Measurement:
    """Iterate a fresh training loader ``epochs`` times, worker start-up included (with the
    configs' ``persistent_workers: true`` the workers start once per timed run, otherwise once
    per epoch); nothing but decode + augment + collate is timed."""
    loader = fit_datamodule(cfg).train_dataloader()
    images = batches = 0
    first = None
    start = time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if first is None:
                first = time.perf_counter() - start
            images += bench.plain_loop.images_in(batch)
            batches += 1
            if max_batches is not None and i + 1 >= max_batches:
                break
    return Measurement(
        time.perf_counter() - start, images, batches, {"first_batch_s": round(first or 0.0, 4)}
    )


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Loader images/s per case and worker count, and model train images/s for comparison."""
    workers = args.workers if args.workers is not None else ([0, 1] if args.tiny else [0, 1, 2])
    result: dict[str, Any] = {
        "settings": {"workers": workers, "device": str(device), "min_images": args.min_images},
        "cases": {},
    }
    benches = family_benches(training=True)
    for family in args.families or list(benches):
        for case in benches[family].data_cases:
            if case.needs and not (REPO / case.needs).exists():
                print(f"data/{case.name}: skipped, {case.needs} is missing", flush=True)
                result["cases"][case.name] = {"skipped": f"{case.needs} missing"}
                continue
            result["cases"][case.name] = _case(case, benches[family], workers, args, device)
            gc.collect()
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _case(
    case: DataCase,
    bench: FamilyBench,
    workers: list[int],
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    run_dir = args.out / "runs" / "data" / case.name.replace("/", "_")
    extra = case.tiny if args.tiny else []
    base = [*case.overrides, *device_overrides(device), *LEAN_TRAINER, *extra, *args.override]
    cfg = compose(base, run_dir)
    datamodule = fit_datamodule(cfg)
    batch_size = int(cfg.data.batch_size)
    max_batches = 2 if args.tiny else None
    epoch_batches = len(datamodule.train_dataloader())
    epoch_images = batch_size * (epoch_batches if max_batches is None else max_batches)
    # Whole epochs until a timed run covers ≥ min_images (small sets: several epochs).
    epochs = 1 if args.tiny else max(1, math.ceil(args.min_images / max(epoch_images, 1)))

    def loader_side(w: int) -> Callable[[], Measurement]:
        wcfg = compose([*base, f"data.num_workers={w}"], run_dir)
        return lambda: _time_loader(wcfg, bench, max_batches, epochs)

    print(f"data/{case.name}: {epochs} epoch(s) of {epoch_images} images per run", flush=True)
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
    model_side = timed_plain(bench.plain_loop(module.model, cfg, device), batches)
    print(f"data/{case.name}: model train speed", flush=True)
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


def markdown(result: dict[str, Any]) -> str:
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


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--workers", type=int, nargs="+", default=None, help="loader worker counts (default 0 1 2)"
    )
    group.add_argument(
        "--min-images",
        type=int,
        default=192,
        help="images per timed loader run at least (whole epochs)",
    )


SUITE = Suite(
    run=run,
    markdown=markdown,
    help="the input pipeline alone per dataset case and worker count, vs the model's speed",
    add_arguments=add_arguments,
)
