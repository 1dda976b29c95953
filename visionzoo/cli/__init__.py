"""The only Hydra-aware module: composes configs and runs train / eval / predict.

``train.py``, ``eval.py`` and ``predict.py`` at the repository root call the ``*_entry``
functions. User mistakes (bad config keys, wrong model for the task, missing or corrupt data)
end with a one-paragraph message and exit status 2, never a traceback.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import secrets
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)
from pytorch_lightning.utilities.exceptions import MisconfigurationException

import visionzoo  # noqa: F401  (registers the built-in families, models and losses)
from visionzoo.cli.checks import (
    CONFIG_DIR,
    UserError,
    check_data_task,
    check_model_task,
    check_overrides,
    check_values,
    checkpoint_changes,
    data_choice,
    data_task,
    family_of,
    searchpath,
)
from visionzoo.core.callbacks import FiniteLossGuard, Throughput, last_checkpoint
from visionzoo.core.checkpoint import AtomicCheckpointIO, check_resume, load_checkpoint_module
from visionzoo.core.io import DataError
from visionzoo.family import Family, load_plugins
from visionzoo.registry import RegistryError, get_family, model_info

USER_ERRORS = (DataError, RegistryError, FileNotFoundError, ValueError, KeyError)
ERROR_FILE = "error.txt"  # a failed sweep job's error line, next to its metrics.json

if not OmegaConf.has_resolver("vz_uid"):
    # Run folders get a random suffix so jobs started in the same second never collide.
    OmegaConf.register_new_resolver("vz_uid", lambda: secrets.token_hex(3), use_cache=True)


# --------------------------------------------------------------------------- building blocks
def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    from pytorch_lightning.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
        RichProgressBar,
        TQDMProgressBar,
    )

    cb = cfg.callbacks
    monitor, mode = cfg.task.monitor, cfg.task.monitor_mode
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode=mode,
            save_last=False,  # last.ckpt has a callback of its own (last_checkpoint)
            save_top_k=cb.checkpoint.save_top_k,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        FiniteLossGuard(),
        Throughput(),
    ]
    if cb.checkpoint.save_last:
        callbacks.append(last_checkpoint(run_dir / "checkpoints"))
    if cb.lr_monitor and cfg.get("logger"):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cb.progress == "rich":
        callbacks.append(RichProgressBar(leave=True))
    elif cb.progress == "tqdm":
        callbacks.append(TQDMProgressBar())
    if cb.early_stopping:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, **cb.early_stopping))
    return callbacks


def checkpoint_io(asynchronous: bool) -> Any:
    """Atomic checkpoint writes; ``asynchronous``: on a background thread (Lightning's
    ``AsyncCheckpointIO``: tensors are copied on the training thread, so the file holds the
    state of the moment it was asked for, and the thread is joined before ``fit`` returns)."""
    if not asynchronous:
        return AtomicCheckpointIO()
    from pytorch_lightning.plugins.io import AsyncCheckpointIO

    return AsyncCheckpointIO(AtomicCheckpointIO())


# trainer options worth naming when Lightning refuses the combination
TRAINER_CHOICES = ("accelerator", "devices", "num_nodes", "strategy", "precision")


def build_trainer(cfg: DictConfig, run_dir: Path, **extra: Any) -> pl.Trainer:
    loggers = [hydra.utils.instantiate(v) for v in (cfg.get("logger") or {}).values()]
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kwargs.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={kwargs['accelerator']} but PyTorch sees no CUDA GPU "
            "(torch.cuda.is_available() is False); use trainer=cpu, or check the driver and "
            "CUDA_VISIBLE_DEVICES"
        )
    if kwargs.get("accelerator") == "cpu" and kwargs.get("sync_batchnorm"):
        raise UserError(
            "trainer.sync_batchnorm=true needs GPUs; "
            "add trainer.sync_batchnorm=false for DDP on CPU"
        )
    callbacks = build_callbacks(cfg, run_dir)
    plugins = [checkpoint_io(bool(cfg.callbacks.checkpoint.get("asynchronous", False)))]
    try:
        return pl.Trainer(
            **kwargs,
            logger=loggers or False,
            callbacks=callbacks,
            enable_progress_bar=cfg.callbacks.progress != "none",
            default_root_dir=str(run_dir),
            plugins=plugins,
            use_distributed_sampler=False,  # SeededSampler shards by rank itself
            **extra,
        )
    except (MisconfigurationException, TypeError, ValueError) as err:
        # Lightning's own check of a trainer option (trainer.devices=abc, a bad strategy)
        shown = " ".join(f"trainer.{k}={v!r}" for k, v in kwargs.items() if k in TRAINER_CHOICES)
        raise UserError(
            f"Lightning refused the trainer options ({shown}): {str(err).strip().splitlines()[0]}"
            " — see configs/trainer/*.yaml for valid settings"
        ) from err


def build_datamodule(data_cfg: dict[str, Any] | DictConfig) -> pl.LightningDataModule:
    if isinstance(data_cfg, DictConfig):
        data_cfg = OmegaConf.to_container(data_cfg, resolve=True)
    try:
        return hydra.utils.instantiate(data_cfg, _convert_="all")
    except InstantiationException as err:  # surface our own one-line data errors unwrapped
        if isinstance(err.__cause__, DataError | ValueError):
            raise err.__cause__ from None
        raise


def to_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def run_dir_of() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def print_summary(title: str, metrics: dict[str, float], paths: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:.4g}")
    console = Console()
    console.print(table)
    for k, v in paths.items():
        console.print(f"[bold]{k}:[/bold] {v}")


def final_metrics(
    trainer: pl.Trainer, prefixes: tuple[str, ...] = ("val/", "test/")
) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(prefixes) and torch.as_tensor(v).numel() == 1
    }


# --------------------------------------------------------------------------- commands
def build_module(cfg: DictConfig, family: Family, meta: dict[str, Any]) -> pl.LightningModule:
    """The family's task module for a composed config and the data module's ``meta``."""
    model_cfg = to_plain(cfg.model)
    if model_cfg.get("num_classes", "absent") is None:
        model_cfg["num_classes"] = meta["num_classes"]
    task = to_plain(cfg.task)
    task.pop("name")
    higher_is_better = model_info(model_cfg["name"]).higher_is_better
    if higher_is_better is not None:  # the model knows which way its score is better
        task["monitor_mode"] = "max" if higher_is_better else "min"
    return family.module(
        model=model_cfg,
        loss=to_plain(cfg.get("loss")),
        optimizer=to_plain(cfg.optimizer),
        scheduler=to_plain(cfg.get("scheduler")) or None,
        data_meta=meta,
        data=to_plain(cfg.data),
        task_name=family.name,
        **task,
    )


def build_run(cfg: DictConfig, run_dir: Path, **trainer_kw: Any):
    """The (trainer, module, datamodule) triple ``train`` fits; also used by benchmarks."""
    family = check_model_task(cfg)
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    module = build_module(cfg, family, datamodule.meta)
    return build_trainer(cfg, run_dir, **trainer_kw), module, datamodule


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured task; returns the final validation metrics."""
    check_model_task(cfg)  # before anything reads the family's keys
    check_values(cfg)  # before seeding, which reads cfg.seed
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = run_dir_of()
    trainer, module, datamodule = build_run(cfg, run_dir)
    if trainer.is_global_zero:
        (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    ckpt = cfg.ckpt_path
    if ckpt:
        check_resume(ckpt, module)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    metrics = final_metrics(trainer)
    if module.best is not None:
        metrics[f"{module.monitor}_best"] = module.best
    log_dir = trainer.log_dir  # a collective call under DDP: every rank asks
    if trainer.is_global_zero:
        written = {  # only files that exist: a fast_dev_run writes none
            Path(cb.best_model_path).stem: cb.best_model_path
            for cb in trainer.checkpoint_callbacks
            if cb.best_model_path and Path(cb.best_model_path).is_file()
        }
        paths = {
            "best checkpoint": written.get("best", ""),
            "last checkpoint": written.get("last", ""),
            "resolved config": str(run_dir / "config_resolved.yaml"),
            "logs": str(log_dir or run_dir),
        }
        (run_dir / "metrics.json").write_text(
            json.dumps({"metrics": metrics, "paths": paths}, indent=1)
        )
        print_summary(f"{cfg.task.name} / {cfg.model.name}: final metrics", metrics, paths)
    return metrics


def metric_only_module(
    cfg: DictConfig, script: str = "eval.py"
) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """``eval.py`` / ``predict.py`` without ``ckpt_path``: the task module of a model that has no
    learnt weights (registered ``trainable=False``) and the configured data module."""
    if "name" not in (cfg.get("task") or {}):
        raise UserError(
            f"{script} needs ckpt_path=<file.ckpt>, or task=<family> model=<metric-only model> "
            "to score without a checkpoint"
        )
    family = check_model_task(cfg)
    if model_info(cfg.model.name).trainable and not cfg.model.get("weights"):
        only = family.metric_only_models()
        raise UserError(
            f"model {cfg.model.name!r} has learnt weights: give ckpt_path=<file.ckpt> (or, for "
            "detection, model.weights=<official checkpoint>). Models "
            f"of task {family.name!r} that run without one: {', '.join(only) or '(none)'}"
        )
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()  # its label statistics are part of the module's options
    # layers a weights file does not cover (another class count) start from seeded draws
    pl.seed_everything(cfg.get("seed", 0), verbose=False)
    return build_module(cfg, family, datamodule.meta).eval(), datamodule


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a checkpoint (or a metric-only model) on a dataset and save the metrics."""
    stage = cfg.split
    if stage not in ("val", "test"):
        raise UserError(f"split={stage!r}; choose val or test")
    if cfg.ckpt_path:
        task, data = to_plain(cfg.task) or {}, to_plain(cfg.data) or {}
        if "name" in task:
            raise UserError(
                "task= is for models without a checkpoint; with ckpt_path change the "
                "checkpoint's options with task.<key>=... instead"
            )
        other_dataset = "_target_" in data  # data=<name>: another dataset, not a change
        module = load_checkpoint_module(cfg.ckpt_path, task, {} if other_dataset else data)
        if other_dataset:
            check_data_task(cfg, module.hparams.task_name)
        datamodule = build_datamodule(data if other_dataset else module.hparams.data)
        datamodule.prepare_data()
    else:
        module, datamodule = metric_only_module(cfg)
    run_dir = run_dir_of()
    paths = {"metrics file": str(run_dir / "eval_metrics.json")}
    if cfg.save_predictions:
        if not module.saves_predictions:
            raise UserError(
                f"save_predictions=true is not supported for task {module.hparams.task_name!r} "
                "(detection writes COCO results); drop it, or use predict.py"
            )
        module.predictions_file = run_dir / "predictions.json"
        paths["predictions (COCO results)"] = str(module.predictions_file)
    trainer = pl.Trainer(
        **{k: v for k, v in to_plain(cfg.trainer).items() if v is not None},
        logger=False,
        default_root_dir=str(run_dir),
        enable_progress_bar=False,
        use_distributed_sampler=False,
    )
    run = trainer.validate if stage == "val" else trainer.test
    run(module, datamodule=datamodule, verbose=False)  # our own table follows
    metrics = final_metrics(trainer)
    out = {"checkpoint": cfg.ckpt_path, "split": stage, "metrics": metrics}
    if not cfg.ckpt_path:
        out["model"] = cfg.model.name
        if cfg.model.get("weights"):
            out["weights"] = cfg.model.weights
    (run_dir / "eval_metrics.json").write_text(json.dumps(out, indent=1))
    print_summary(f"eval on {stage}", metrics, paths)
    return metrics


def predict(cfg: DictConfig) -> None:
    """Write predictions (JSON + rendered pictures) for an image or a folder of images."""
    from visionzoo.core.io import IMAGE_SUFFIXES, list_images

    if cfg.ckpt_path:
        module = load_checkpoint_module(cfg.ckpt_path)
        datamodule = build_datamodule(module.hparams.data)
    else:
        module, datamodule = metric_only_module(cfg, script="predict.py")
    family = get_family(module.hparams.task_name)
    if not family.predict:
        raise UserError(f"predict.py is not supported for task {family.name!r}")
    # reference= / video= reach only a family whose predict_files takes them (image quality)
    takes = inspect.signature(module.predict_files).parameters
    options = {k: v for k, v in {"references": cfg.reference, "video": cfg.video}.items() if v}
    if options and not set(options) <= set(takes):
        raise UserError(
            f"reference= and video= are for full-reference and video quality (task=iqa), not for "
            f"task {family.name!r}"
        )
    source = Path(cfg.input)
    if source.is_dir():
        files = list_images(source)
    elif source.is_file() and (source.suffix.lower() in IMAGE_SUFFIXES or "video" in takes):
        files = [source]
    else:
        raise UserError(f"input={cfg.input!r} is neither an image file nor a folder of images")
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = module.predict_files(files, out_dir, datamodule, **options)
    result = out_dir / "predictions.json"
    result.write_text(json.dumps(records, indent=1))
    print(f"wrote {len(records)} predictions to {result} and pictures to {out_dir}")


def export(cfg: DictConfig) -> None:
    """Export a checkpoint's network to ONNX (where its family supports it)."""
    module = load_checkpoint_module(cfg.ckpt_path)
    family = get_family(module.hparams.task_name)
    if family.export is None:
        raise UserError(f"export.py is not supported for task {family.name!r}")
    print(family.export(module, cfg.output, cfg.image_size, cfg.opset, cfg.check))


def compare(cfg: DictConfig) -> dict[str, Any]:
    """Similarity of two images under a checkpoint, and its decision at ``far``."""
    module = load_checkpoint_module(cfg.ckpt_path)
    family = get_family(module.hparams.task_name)
    if family.compare is None:
        raise UserError(f"compare.py is not supported for task {family.name!r}")
    for key in ("image1", "image2"):
        if not Path(cfg[key]).is_file():
            raise UserError(f"{key}={cfg[key]!r} is not an image file")
    datamodule = build_datamodule(module.hparams.data)
    result = family.compare(module, cfg.image1, cfg.image2, float(cfg.far), datamodule)
    verdict = "same" if result["same"] else "different"
    print(
        f"similarity {result['similarity']:.4f}; threshold at FAR={result['far']:g}: "
        f"{result['threshold']:.4f} -> {verdict}"
    )
    print(json.dumps(result))
    return result


def check_data(cfg: DictConfig) -> None:
    """Print the family's report on each split of a dataset (statistics and every problem)."""
    if cfg.get("data") is None:
        raise UserError("check_data.py needs data=<dataset> (or task=<family> for its default)")
    task = cfg.task.name if cfg.get("task") else data_task(cfg.data.get("_target_"))
    if task is None:
        raise UserError(f"data={data_choice(cfg)} does not say its task family; add task=<family>")
    family = family_of(task)
    if family.check_data is None:
        raise UserError(f"check_data.py is not supported for task {family.name!r}")
    check_data_task(cfg, family.name)
    datamodule = build_datamodule(cfg.data)
    print(family.check_data(datamodule, list(cfg.splits), cfg.decode_images))


# --------------------------------------------------------------------------- sweeps
class SweepSummary(HydraCallback):
    """After a ``-m`` sweep, write ``summary.json`` and ``summary.csv`` in the sweep folder:
    one row per job with its overrides, status, final metrics (from each job's metrics.json)
    and, for a failed job, its error line."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import csv

        sweep_dir = Path(config.hydra.sweep.dir)
        rows = []
        jobs = (p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file())
        for job_dir in sorted(jobs, key=lambda p: (len(p.name), p.name)):
            metrics_file, error_file = job_dir / "metrics.json", job_dir / ERROR_FILE
            ok = metrics_file.is_file()
            error = error_file.read_text().strip() if error_file.is_file() else ""
            rows.append(
                {
                    "job": job_dir.name,
                    "overrides": list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")),
                    "status": "ok" if ok else "failed",
                    "error": "" if ok else error or "no metrics.json (the job did not finish)",
                    "metrics": json.loads(metrics_file.read_text())["metrics"] if ok else {},
                }
            )
        (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=1))
        keys = sorted({k for r in rows for k in r["metrics"]})
        with (sweep_dir / "summary.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["job", "status", "overrides", *keys, "error"])
            for r in rows:
                metrics = [r["metrics"].get(k, "") for k in keys]
                writer.writerow(
                    [r["job"], r["status"], " ".join(r["overrides"]), *metrics, r["error"]]
                )
        failed = sum(r["status"] == "failed" for r in rows)
        print(
            f"sweep summary: {sweep_dir / 'summary.csv'} ({len(rows) - failed} ok, {failed} failed)"
        )


# --------------------------------------------------------------------------- entry points
def user_message(err: BaseException) -> str:
    """The one line to print for a user error. An error raised inside a DataLoader worker comes
    back re-raised with the worker's whole traceback in its message; its last line is the
    original message."""
    message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if last.startswith(type(err).__name__) else last
    return message


def error_line(err: BaseException) -> str | None:
    """The one-line message for a user mistake, or ``None`` for a genuine bug (traceback)."""
    key = None
    if isinstance(err, MissingMandatoryValue):
        key = err.full_key or "?"
    elif isinstance(err, InterpolationToMissingValueError):  # e.g. hydra.run.dir: ${output}
        found = re.search(r"Missing mandatory value: ([\w.]+)", str(err))
        key = found.group(1) if found else None
    if key is not None:
        return f"{key} is required but not set; add {key}=<value> to the command line"
    if isinstance(err, OmegaConfBaseException):  # its text adds full_key / object_type lines
        return str(err).strip().splitlines()[0]
    if isinstance(err, (UserError, *USER_ERRORS)):
        return user_message(err)
    if isinstance(err, OSError) and err.filename is not None:  # read-only, full or gone
        return (
            f"{err.strerror or err}: {str(err.filename)!r}; check that the folder exists, is "
            "writable and has free space (runs go under paths.output_root, i.e. "
            "$VISIONZOO_OUTPUT)"
        )
    return None


def hydra_error_line(err: BaseException) -> str:
    """Hydra's paragraph-long errors as one line; a misspelt group choice (``model=yolo5``)
    lists the valid choices on it."""
    from hydra.errors import MissingConfigException

    options = getattr(err, "options", None)
    if isinstance(err, MissingConfigException) and options:
        group, _, choice = str(err.missing_cfg_file or "").rpartition("/")
        return f"{group}={choice} does not exist; choose one of: {', '.join(options)}"
    return " ".join(str(err).split())


def in_sweep() -> bool:
    """Whether this job is one of a ``-m`` sweep."""
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _guarded(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    def run(cfg: DictConfig) -> Any:
        try:
            return fn(cfg)
        except Exception as err:
            line = error_line(err)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            if in_sweep():  # record the failed job and let the sweep go on
                (run_dir_of() / ERROR_FILE).write_text(line + "\n")
                return None
            sys.exit(2)

    return run


def _entry(config_name: str, fn: Callable[[DictConfig], Any]) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    # Frozen copies held by a module (a weight EMA) stay in eval mode on purpose; Lightning
    # would warn about them each fit.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    # VisionModule's on_after_batch_transfer (channels-last inputs) is meant to win over the
    # data module's, which keeps Lightning's default; Lightning would warn about it each fit.
    warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer`.*")
    if config_name == "eval":
        sys.argv[1:] = checkpoint_changes(sys.argv[1:])
    try:
        load_plugins()
        check_overrides(config_name, sys.argv[1:])
    except (UserError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not any(a.startswith("hydra.searchpath=") for a in sys.argv[1:]):
        sys.argv += searchpath()
    # Hydra's own errors (a bad group choice, an unwritable run folder) come back to us as
    # exceptions, printed as one paragraph instead of Hydra's short traceback.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    main = hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")
    try:
        main(_guarded(fn))()
    except HydraException as err:
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        line = error_line(err)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


def train_entry() -> None:
    _entry("train", train)


def eval_entry() -> None:
    _entry("eval", evaluate)


def predict_entry() -> None:
    _entry("predict", predict)


def export_entry() -> None:
    _entry("export", export)


def compare_entry() -> None:
    _entry("compare", compare)


def check_data_entry() -> None:
    _entry("check_data", check_data)


__all__ = [
    "check_data_entry",
    "compare",
    "compare_entry",
    "eval_entry",
    "evaluate",
    "export_entry",
    "predict",
    "predict_entry",
    "train",
    "train_entry",
]
