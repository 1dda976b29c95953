"""``overhead`` suite: framework cost per family. Our LightningModule under ``trainer.fit`` vs a
plain loop driving the same ``nn.Module`` with the same loss and optimizer, both fed the same
pre-collated batches, so the ratio measures Lightning + visionzoo and nothing else."""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from visionzoo.bench.cases import FamilyBench, Suite, family_benches
from visionzoo.bench.harness import (
    LEAN_TRAINER,
    BatchList,
    Measurement,
    alternate,
    collect_batches,
    compose,
    cpu_ratio,
    device_overrides,
    image_size_of,
    paired_ratio,
    peak_rss_mib,
    summarize,
    sync,
)
from visionzoo.bench.report import md_header, md_table, raw_table
from visionzoo.cli import build_run, build_trainer, to_plain


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Per family: Lightning module under trainer.fit vs a plain loop, same pre-collated batches."""
    # fit's fixed setup/teardown measured ~10 ms, so it does not need amortising.
    benches = family_benches(training=True)
    families = args.families or list(benches)
    batches = {
        f: args.batches or (2 if args.tiny else benches[f].overhead_batches) for f in families
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
        result["families"][family] = _family(family, benches[family], batches[family], args, device)
        gc.collect()
    return result


def _family(
    family: str,
    bench: FamilyBench,
    n_batches: int,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    run_dir = args.out / "runs" / "overhead" / family
    overrides = [
        *bench.overrides,
        *device_overrides(device),
        *LEAN_TRAINER,
        "trainer.max_epochs=1",
        "data.num_workers=0",
    ]
    if args.tiny:
        overrides += ["data.batch_size=4", *bench.tiny]
    overrides += args.override
    cfg = compose(overrides, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    _, module, datamodule = build_run(cfg, run_dir)
    datamodule.setup("fit")
    batches = collect_batches(datamodule.train_dataloader(), n_batches)
    images_per_pass = sum(bench.plain_loop.images_in(b) for b in batches)
    plain = bench.plain_loop(module.model, cfg, device)
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
                    bench.eval_forward(module, b, device)

        seconds, _ = timed("eval", forward_all)
        return Measurement(seconds, images_per_pass, len(batches))

    print(f"overhead/{family}: train, {n_batches} pre-collated batches per run", flush=True)
    raw = alternate({"lightning": lightning_side, "plain": plain_side}, args.repeats, args.warmup)
    lit, pln = summarize(raw["lightning"]), summarize(raw["plain"])
    print(f"overhead/{family}: eval (the module's inference path, no_grad)", flush=True)
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


def markdown(result: dict[str, Any]) -> str:
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


def add_arguments(group: Any) -> None:
    batches = ", ".join(
        f"{b.overhead_batches} {n}" for n, b in family_benches(training=True).items()
    )
    group.add_argument(
        "--batches",
        type=int,
        default=None,
        help=f"pre-collated batches per timed run (default: the family's, {batches})",
    )


SUITE = Suite(
    run=run,
    markdown=markdown,
    help="Lightning module under trainer.fit vs a plain loop, per family",
    add_arguments=add_arguments,
)
