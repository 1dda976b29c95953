"""Recognition in the benchmarks: the plain-loop reference step (the module's training loss,
``model.loss(model(images), labels)``), the overhead and data cases, and the ``recognition``
suite. That suite trains ``task=recognition model=arcface data=att_faces`` by ``trainer.fit``
exactly as ``train.py`` does, next to the same backbone trained with pytorch-metric-learning's
``ArcFaceLoss`` by a plain PyTorch loop over the same data module config, optimizer, schedule,
epochs and seed, for each of several seeds (default 0 1 2; the sides are compared by their
mean). Both are scored after every epoch with insightface's 10-fold verification
accuracy on the held-out identities; then training images/s of both in alternating timed chunks;
then the two networks alone in one plain loop on the same pre-collated batches."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

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
from visionzoo.recognition.heads import resolve_scale
from visionzoo.recognition.models import create_backbone
from visionzoo.recognition.module import embed
from visionzoo.recognition.recognizer import Recognizer
from visionzoo.recognition.verification import verification_accuracy

RECIPE = ["task=recognition", "model=arcface", "data=att_faces"]
ATT_FACES = "../shared/data/att_faces"
SIDES = ("ours", "pml")
SMALL = ["data.image_size=[32,32]"]  # the model configs build the backbone for this size
# --tiny: one epoch of 2 steps, one validation batch (it still holds all 100 held-out faces)
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    *SMALL,
    "data.batch_size=8",
    "data.num_workers=0",
    "task.plots=false",
]


class RecognitionPlainLoop(PlainLoop):
    """``RecognitionModule.training_step``'s loss: the recognizer's head on its embeddings."""

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(self.model(batch["image"]), batch["label"])


def _eval_forward(module: pl.LightningModule, batch: Batch, device: torch.device) -> Any:
    return embed(module.model, batch["image"].to(device, non_blocking=True), module.flip_test)


# ------------------------------------------------------------------------------ pml side
class _Float32Loss(nn.Module):
    """A pml loss fed float32 embeddings: pml casts its class matrix ``W`` to the embeddings'
    dtype in place (``cast_types``), which under bf16 autocast would make the trained parameter
    bf16; our heads compute in float32 too (``heads.full_precision``)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings.float(), labels)


def pml_recognizer(cfg: DictConfig, num_classes: int) -> Recognizer:
    """``cfg.model``'s backbone, as ``build_recognizer`` creates it, with pml's
    ``ArcFaceLoss`` as the head (pml's margin is in degrees, ours in radians)."""
    from pytorch_metric_learning.losses import ArcFaceLoss

    m = cfg.model
    if m.name != "arcface" or m.head.get("easy_margin") or m.get("partial_fc") is not None:
        raise SystemExit(
            "error: the recognition suite compares ArcFace heads; use model=arcface with "
            "model.head.easy_margin=false and model.partial_fc=null"
        )
    backbone = create_backbone(
        m.backbone,
        embedding_size=m.embedding_size,
        dropout=m.dropout,
        pretrained_file=m.pretrained_file,
        in_chans=m.in_chans,
        input_size=m.input_size,
    )
    head = ArcFaceLoss(
        num_classes=num_classes,
        embedding_size=m.embedding_size,
        margin=math.degrees(m.head.m),
        scale=resolve_scale(m.head.s, num_classes),  # "auto": the same number ours uses
    )
    return Recognizer(backbone=backbone, head=_Float32Loss(head), head_name="pml_arcface")


def _pml_datamodule(cfg: DictConfig, device: torch.device) -> pl.LightningDataModule:
    """``cfg``'s data module, ``pin_memory: auto`` resolved as for ours (which asks the trainer)."""
    if device.type == "cuda" and cfg.data.pin_memory == "auto":
        cfg = OmegaConf.merge(cfg, {"data": {"pin_memory": True}})
    return fit_datamodule(cfg)


@torch.no_grad()
def verification(
    model: nn.Module, datamodule: Any, loader: Any, limit: int, *, folds: int, flip: bool
) -> dict[str, float]:
    """``RecognitionModule``'s validation accuracy: flip-fused, L2-normalised embeddings of the
    first ``limit`` batches of ``loader`` (images not reached stay zero, as in the module), then
    10-fold verification accuracy per set (``<set>/acc``) and their mean (``acc``)."""
    model.eval()
    device = next(model.parameters()).device
    table: np.ndarray | None = None
    for i, batch in enumerate(loader):
        if i >= limit:
            break
        emb = embed(model, batch["image"].to(device), flip).cpu().numpy()
        if table is None:
            table = np.zeros((len(datamodule.datasets["val"]), emb.shape[1]), np.float32)
        table[batch["index"].numpy()] = emb
    if table is None:
        return {}
    accs = {
        f"{s.name}/acc": verification_accuracy(
            table[s.first], table[s.second], s.same, folds=folds
        )["accuracy"]
        for s in datamodule.sets
    }
    return {**accs, "acc": float(np.mean(list(accs.values())))}


# ------------------------------------------------------------------------------- quality
class _Accuracies(pl.Callback):
    """``val/acc`` and each ``val/<set>/acc`` after every validation run, named as
    ``verification`` names them."""

    def __init__(self, set_names: list[str]) -> None:
        self.keys = ["acc", *(f"{name}/acc" for name in set_names)]
        self.rows: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            m = trainer.callback_metrics
            row = {k: float(m[f"val/{k}"]) for k in self.keys if f"val/{k}" in m}
            self.rows.append({"epoch": trainer.current_epoch, **row})


def _outcome(history: list[dict[str, float]], seconds: float) -> dict[str, Any]:
    """Final and best (with its epoch) mean verification accuracy, the history, wall time."""
    scored = [r for r in history if not math.isnan(r.get("acc", math.nan))]
    top = max(scored, key=lambda r: r["acc"], default={"acc": math.nan, "epoch": -1})
    return {
        "final_acc": history[-1]["acc"] if history else math.nan,
        "best_acc": top["acc"],
        "best_epoch": int(top["epoch"]),
        "history": history,
        "train_wall_s": round(seconds, 2),
    }


def _quality(cfg: DictConfig, run_dir: Path, device: torch.device) -> dict[str, Any]:
    """Ours by ``train.py``'s path, then pml in the plain loop from the same seed."""
    epochs = int(cfg.trainer.max_epochs)
    print(f"quality, seed {cfg.seed}: ours ({epochs} epochs, trainer.fit)", flush=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer, module, datamodule = build_run(cfg, run_dir)
    start_weights = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    accuracies = _Accuracies([s["name"] for s in cfg.data.val_sets])
    trainer.callbacks.append(accuracies)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    ours = _outcome(accuracies.rows, time.perf_counter() - start)
    print(f"  ours: final acc {ours['final_acc']:.4f}, best {ours['best_acc']:.4f}", flush=True)

    print(f"quality, seed {cfg.seed}: pml ({epochs} epochs, plain loop)", flush=True)
    pml_dm = _pml_datamodule(cfg, device)
    train_loader, val_loader = pml_dm.train_dataloader(), pml_dm.val_dataloader()
    steps = limit_count(cfg.trainer.get("limit_train_batches"), len(train_loader))
    val_steps = limit_count(cfg.trainer.get("limit_val_batches"), len(val_loader))
    scoring = {"folds": int(cfg.task.folds), "flip": bool(cfg.task.flip_test)}
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # right before model creation
    loop = RecognitionPlainLoop(pml_recognizer(cfg, pml_dm.num_classes), cfg, device)
    same_start = all(
        torch.equal(v.cpu(), start_weights[k]) for k, v in loop.model.backbone.state_dict().items()
    )
    history: list[dict[str, float]] = []

    def end_epoch(epoch: int) -> None:
        if val_steps:
            row = verification(loop.model, pml_dm, val_loader, val_steps, **scoring)
            history.append({"epoch": epoch, **row})
            print(f"  pml epoch {epoch}: acc {row['acc']:.4f}", flush=True)

    start = time.perf_counter()
    loop.run(
        train_loader, steps, epochs, set_epoch=train_loader.sampler.set_epoch, end_epoch=end_epoch
    )
    pml = _outcome(history, time.perf_counter() - start)
    # The pml side's scoring applied to our final network must give what our module logged.
    rescored = verification(module.model.to(device), pml_dm, val_loader, val_steps, **scoring)
    return {
        "ours": ours,
        "pml": pml,
        "same_initial_backbone": same_start,
        "ours_final_acc_by_plain_scoring": rescored.get("acc", math.nan),
        "acc_final_ours_minus_pml": ours["final_acc"] - pml["final_acc"],
        "acc_best_ours_minus_pml": ours["best_acc"] - pml["best_acc"],
        "val_pairs": {s.name: [int(s.same.sum()), int((~s.same).sum())] for s in pml_dm.sets},
    }


# ---------------------------------------------------------------------------- throughput
def _fit_chunk(
    cfg: DictConfig, module: pl.LightningModule, datamodule: Any, run_dir: Path
) -> Callable[[], Measurement]:
    """A side for ``alternate``: one ``trainer.fit`` by a fresh lean trainer, as every
    ``train.py`` call builds its own."""

    def chunk() -> Measurement:
        trainer = build_trainer(cfg, run_dir)
        sync(module.device)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        sync(module.device)
        steps = trainer.global_step
        return Measurement(time.perf_counter() - start, steps * int(cfg.data.batch_size), steps)

    return chunk


def _loop_chunk(loop: PlainLoop, datamodule: Any, steps: int) -> Callable[[], Measurement]:
    """A side for ``alternate``: ``steps`` plain-loop steps on a fresh training loader (each
    ``trainer.fit`` asks the data module for one too, and starts its workers)."""

    def chunk() -> Measurement:
        sync(loop.device)
        start = time.perf_counter()
        loader = datamodule.train_dataloader()
        images, done = loop.run(loader, steps, 1, set_epoch=loader.sampler.set_epoch)
        return Measurement(time.perf_counter() - start, images, done)

    return chunk


def _versus(raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each side's summary, the ratio ours/pml of their medians and the paired ratio."""
    sides = {side: summarize(raw[side]) for side in SIDES}
    ratio = sides["ours"]["images_per_s"] / sides["pml"]["images_per_s"]
    return {**sides, "ratio": ratio, "ratio_paired_median": paired_ratio(raw["ours"], raw["pml"])}


def _speed(args: argparse.Namespace, base: list[str], run_dir: Path, device: torch.device) -> dict:
    """Training images/s of both in alternating chunks, then of both networks alone."""
    limit = args.rec_chunk_steps or (1 if args.tiny else None)  # None: one whole epoch
    lean = [*base, *LEAN_TRAINER, "trainer.max_epochs=1"]
    cfg = compose([*lean, f"trainer.limit_train_batches={limit}"] if limit else lean, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    _, module, datamodule = build_run(cfg, run_dir)
    pml_dm = _pml_datamodule(cfg, device)
    steps = limit_count(limit, len(pml_dm.train_dataloader()))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    pml_loop = RecognitionPlainLoop(pml_recognizer(cfg, pml_dm.num_classes), cfg, device)
    print(f"throughput: 1 epoch × {steps} steps per chunk", flush=True)
    sides = {
        "ours": _fit_chunk(cfg, module.to(device), datamodule, run_dir),
        "pml": _loop_chunk(pml_loop, pml_dm, steps),
    }
    throughput = _versus(alternate(sides, args.repeats, args.warmup))
    # Same plain loop, same batches: the gap left is the networks' (here: the heads') own.
    batches = collect_batches(pml_dm.train_dataloader(), steps)
    ours_loop = RecognitionPlainLoop(module.model, cfg, device)
    print(f"model only: {len(batches)} pre-collated batches per run, plain loop", flush=True)
    sides = {"ours": timed_plain(ours_loop, batches), "pml": timed_plain(pml_loop, batches)}
    return {
        "throughput": {**throughput, "steps_per_chunk": steps, "trainer_overrides": LEAN_TRAINER},
        "model_only": _versus(alternate(sides, args.repeats, args.warmup)),
    }


# ----------------------------------------------------------------------------- the suite
def _seeds(args: argparse.Namespace, config_seed: int) -> list[int]:
    """The quality seeds: ``--rec-seeds``, else 0 1 2 (one seed's spread on AT&T, ±0.015, is
    as large as the difference between the two sides), else with ``--tiny`` the config's."""
    if args.rec_seeds:
        return list(dict.fromkeys(args.rec_seeds))
    return [config_seed] if args.tiny else [0, 1, 2]


def seed_means(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Each side's final and best accuracy averaged over the seeds, and ours minus pml."""
    mean: dict[str, float] = {}
    for side in SIDES:
        for key in ("final_acc", "best_acc"):
            mean[f"{side}_{key}"] = float(np.mean([q[side][key] for q in per_seed.values()]))
    mean["acc_final_ours_minus_pml"] = mean["ours_final_acc"] - mean["pml_final_acc"]
    mean["acc_best_ours_minus_pml"] = mean["ours_best_acc"] - mean["pml_best_acc"]
    return {"seeds": list(per_seed), "mean": mean}


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """att_faces quality (ours vs pml), then training throughput, then model-only speed."""
    run_root = args.out / "runs" / "recognition"
    base = [*RECIPE, *device_overrides(device), "callbacks.progress=none"]
    if args.epochs is not None:
        base.append(f"trainer.max_epochs={args.epochs}")
    base += [*(TINY if args.tiny else []), *args.override]
    cfg = compose(base, run_root / "ours")
    m = cfg.model
    result: dict[str, Any] = {
        "settings": {
            "recipe": " ".join(RECIPE),
            "overrides": base,
            "epochs": int(cfg.trainer.max_epochs),
            "seed": int(cfg.seed),
            "backbone": m.backbone,
            "embedding_size": int(m.embedding_size),
            "image_size": image_size_of(cfg),
            "batch_size": int(cfg.data.batch_size),
            "num_workers": int(cfg.data.num_workers),
            "optimizer": to_plain(cfg.optimizer),
            "scheduler": to_plain(cfg.get("scheduler")),
            "device": str(device),
            "precision": str(cfg.trainer.precision),
            "ours_head": f"ArcFaceHead(s={m.head.s}, m={m.head.m})",
            "pml_head": f"pytorch_metric_learning.losses.ArcFaceLoss(margin="
            f"{math.degrees(m.head.m):.4f}, scale=the s ours uses: {m.head.s}, auto = √2·ln(C−1))",
            # rows are normalised, but Adam's step is relative to their size: the init matters
            "class_matrix_init": "N(0, 1) on both sides (ours since 5c99d14; pml's default)",
        }
    }
    seeds = _seeds(args, int(cfg.seed))
    result["settings"]["quality_seeds"] = seeds
    if args.rec_skip_quality:
        result["quality"] = {}
    else:
        per_seed = {
            seed: _quality(
                compose([*base, f"seed={seed}"], run_root / f"ours_seed{seed}"),
                run_root / f"ours_seed{seed}",
                device,
            )
            for seed in seeds
        }
        result["quality"] = {"per_seed": per_seed, **seed_means(per_seed)}
    result.update(_speed(args, base, run_root / "throughput", device))
    result["acceptance"] = {"throughput_ratio_ge_0.95": result["throughput"]["ratio"] >= 0.95}
    if result["quality"]:
        diff = result["quality"]["mean"]["acc_final_ours_minus_pml"]
        result["acceptance"]["accuracy_final_mean_ours_ge_pml"] = diff >= 0
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def markdown(result: dict[str, Any]) -> str:
    s, q = result["settings"], result["quality"]
    t, mo = result["throughput"], result["model_only"]
    lines = md_header("Recognition benchmark: AT&T faces, our ArcFace vs pml's", result)
    lines += [
        f"`{s['recipe']}`: {s['backbone']} (embedding {s['embedding_size']}), {s['epochs']} "
        f"epochs, faces {s['image_size']}, batch {s['batch_size']}, {s['num_workers']} workers, "
        f"quality seeds {s['quality_seeds']} (throughput: seed {s['seed']}), {s['device']}, "
        f"precision {s['precision']}. Ours: `{s['ours_head']}` "
        f"under `trainer.fit`; pml: `{s['pml_head']}` on the same backbone in a plain loop. "
        f"Class matrix init: {s['class_matrix_init']}.",
        "",
    ]
    if q:
        rows = []
        for seed, r in q["per_seed"].items():
            rows += [
                [
                    seed,
                    k,
                    r[k]["final_acc"],
                    r[k]["best_acc"],
                    r[k]["best_epoch"],
                    r[k]["train_wall_s"],
                ]
                for k in SIDES
            ]
        mean = q["mean"]
        rows += [["mean", k, mean[f"{k}_final_acc"], mean[f"{k}_best_acc"], "", ""] for k in SIDES]
        head = ["seed", "side", "final acc", "best acc", "best epoch", "train wall s"]
        checks = "; ".join(
            f"seed {seed}: same initial backbone {r['same_initial_backbone']}, our final network "
            f"under the pml side's scoring {r['ours_final_acc_by_plain_scoring']:.4f}"
            for seed, r in q["per_seed"].items()
        )
        first = next(iter(q["per_seed"].values()))
        lines += [
            "## Verification accuracy (held-out identities s31–s40, 10-fold)",
            "",
            md_table(head, rows),
            "",
            f"Mean final acc ours − pml: **{mean['acc_final_ours_minus_pml']:+.4f}** over seeds "
            f"{q['seeds']}. Pairs per set (same, different): {first['val_pairs']}. {checks} "
            "(must equal our logged final acc). Train wall time includes each side's validation "
            "(ours also computes ROC, retrieval and identification, writes plots and "
            "checkpoints): the fair speed comparison is the next section.",
            "",
        ]
    lines += ["## Training throughput", ""]
    for title, r in (("trainer.fit vs plain loop", t), ("model only, same plain loop", mo)):
        rows = [[k, r[k]["images_per_s"], r[k].get("steps_per_s", math.nan)] for k in SIDES]
        lines += [
            f"{title}:",
            "",
            md_table(["side", "images/s (median)", "steps/s"], rows),
            "",
            f"Ratio ours/pml of the medians **{r['ratio']:.3f}**, paired "
            f"{r['ratio_paired_median']:.3f}.",
            "",
        ]
    lines += [
        f"Chunks: 1 epoch × {t['steps_per_chunk']} steps each; acceptance is the first ratio "
        "≥ 0.95 (the second one isolates the heads: same backbone, same loop).",
        "",
        f"Acceptance: {result['acceptance']}",
        "",
        "### Raw timings",
        "",
        raw_table(
            {
                **{k: t[k]["raw"] for k in SIDES},
                **{f"{k} (model only)": mo[k]["raw"] for k in SIDES},
            }
        ),
    ]
    return "\n".join(lines)


def add_arguments(group: Any) -> None:
    group.add_argument(
        "--rec-chunk-steps",
        type=int,
        default=None,
        help="training steps per throughput chunk (default: one epoch; 1 with --tiny)",
    )
    group.add_argument(
        "--rec-seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the quality part, compared by their mean (default: 0 1 2; with --tiny "
        "the config's seed)",
    )
    group.add_argument("--rec-skip-quality", action="store_true", help="throughput only")


BENCH = FamilyBench(
    overrides=["task=recognition"],  # synthetic faces + arcface (timm resnet18)
    plain_loop=RecognitionPlainLoop,
    eval_forward=_eval_forward,
    # one 32 × 48² resnet18 step took ≈ 2.5 CPU-s on 2 busy cores
    overhead_batches=4,
    tiny=SMALL,
    data_cases=[
        DataCase("recognition/synthetic", ["task=recognition"], tiny=[*SMALL, "data.batch_size=8"]),
        DataCase(
            "recognition/att_faces",
            ["task=recognition", "data=att_faces"],
            tiny=[*SMALL, "data.batch_size=8"],
            needs=ATT_FACES,
        ),
    ],
    suite=Suite(
        run=run,
        markdown=markdown,
        help="AT&T faces: our ArcFace vs pml's ArcFaceLoss on the same backbone, quality then "
        "throughput (--epochs: training epochs, default the config's trainer.max_epochs)",
        repeats=3,
        add_arguments=add_arguments,
    ),
    packages=("pytorch_metric_learning",),
)
