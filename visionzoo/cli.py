"""The only Hydra-aware module: composes configs and runs train / eval / predict.

``train.py``, ``eval.py`` and ``predict.py`` at the repository root call the ``*_entry``
functions. User mistakes (bad config keys, wrong model for the task, missing or corrupt data)
end with a one-paragraph message and exit status 2, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
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
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from pytorch_lightning.plugins.io import TorchCheckpointIO

import visionzoo  # noqa: F401  (registers the built-in families, models and losses)
from visionzoo.core.callbacks import FiniteLossGuard, Throughput, last_checkpoint
from visionzoo.core.io import DataError
from visionzoo.core.module import RUNTIME_KEYS
from visionzoo.core.utils import atomic_write_bytes
from visionzoo.family import Family, load_plugins
from visionzoo.registry import RegistryError, get_family, list_families, list_models, model_info

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
GROUPS = (
    "task",
    "model",
    "data",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "experiment",
)
USER_ERRORS = (DataError, RegistryError, FileNotFoundError, ValueError, KeyError)
ERROR_FILE = "error.txt"  # a failed sweep job's error line, next to its metrics.json

if not OmegaConf.has_resolver("vz_uid"):
    # Run folders get a random suffix so jobs started in the same second never collide.
    OmegaConf.register_new_resolver("vz_uid", lambda: secrets.token_hex(3), use_cache=True)


class UserError(Exception):
    """A mistake in the command line or config; printed without a traceback."""


# --------------------------------------------------------------------------- config checks
def check_overrides(config_name: str, overrides: list[str]) -> None:
    """Reject ``key=value`` overrides of keys that do not exist, listing the valid keys.

    Hydra already lists the options of an unknown group choice (``model=nope``); this adds the
    same courtesy for plain keys, which Hydra reports only as "not in struct".
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in _override_args(overrides):
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            key, _, value = arg.partition("=")
            raise UserError(
                f"cannot read the command-line argument {arg!r} ({str(err).splitlines()[0]}); "
                "a value with spaces or non-ASCII characters needs quotes Hydra can see, e.g. "
                f"'{key}=\"{value}\"' (single quotes for the shell, double for Hydra)"
            ) from None
    parsed = parser.parse_overrides(_override_args(overrides))
    group_choices, keys = [], []
    for o in parsed:
        key = o.key_or_group
        if key.startswith("hydra") or o.is_add() or o.is_force_add() or o.is_delete():
            continue
        if key.split("/")[0] in GROUPS and "." not in key:
            value = o.value()
            # A sweep (a,b) is checked with its first choice; keys are alike across choices.
            first = value.list[0] if hasattr(value, "list") else value
            group_choices.append(f"{key}={first}")
        else:
            keys.append(key)
    if not keys:
        return
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=group_choices + searchpath())
        except Exception:  # Hydra reports bad group choices itself, with the valid options.
            return
    for key in keys:
        parent_path, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
        if isinstance(parent, DictConfig) and leaf in list(parent.keys()):  # `in` skips ???
            continue
        if not isinstance(parent, DictConfig):
            raise UserError(f"unknown config key {key!r}: {parent_path!r} is not a section")
        valid = ", ".join(sorted(str(k) for k in parent.keys()))
        where = f"in {parent_path!r}" if parent_path else "at the top level"
        raise UserError(
            f"unknown config key {key!r}. Valid keys {where}: {valid}. "
            f"Use +{key}=... to add a new key on purpose."
        )


def searchpath() -> list[str]:
    """The ``hydra.searchpath`` override that adds plug-in families' config folders."""
    extra = config_dirs()[1:]
    return [f"hydra.searchpath=[{','.join(f'file://{d}' for d in extra)}]"] if extra else []


_FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--config-dir",
    "-cd",
    "--info",
    "-i",
    "--experimental-rerun",
}


def checkpoint_changes(argv: list[str]) -> list[str]:
    """``eval.py``: ``data.<key>=`` and ``task.<key>=`` without a ``data=`` / ``task=`` choice
    change what the checkpoint records; they become additions (``+data.root=...``) to the empty
    ``data`` / ``task`` sections of eval.yaml, checked against the checkpoint later."""
    chosen = {a.split("=", 1)[0] for a in _override_args(argv)}
    out = []
    for arg in argv:
        section = arg.split(".", 1)[0]
        if section in ("data", "task") and section not in chosen and "=" in arg:
            arg = f"+{arg}"
        out.append(arg)
    return out


def _override_args(argv: list[str]) -> list[str]:
    """The ``key=value`` arguments of a Hydra command line, without its flags and their values."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
        else:
            out.append(arg)
    return out


# Documented numeric options every run has: (smallest valid value, null allowed). Checked once,
# after composition, so a bad value is named with its key before anything is built.
NUMERIC_OPTIONS: dict[str, tuple[int, bool]] = {
    "seed": (0, False),
    "trainer.max_epochs": (1, False),
    "data.batch_size": (1, False),
    "data.eval_batch_size": (1, True),
    "data.num_workers": (0, False),
}


def check_values(cfg: DictConfig) -> None:
    """Types and ranges of the documented options (``NUMERIC_OPTIONS``, ``data.image_size``,
    ``optimizer.lr``), each refused in one line naming the key and what is valid."""
    for key, (low, nullable) in NUMERIC_OPTIONS.items():
        value = OmegaConf.select(cfg, key, default="absent")
        if value == "absent" or (value is None and nullable):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f"{key}={value!r}: expected a whole number ≥ {low}")
    size = OmegaConf.select(cfg, "data.image_size", default=None)
    sizes = list(size) if isinstance(size, ListConfig | list | tuple) else [size]
    if size is not None and not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes
    ):
        raise UserError(
            f"data.image_size={to_plain(size)!r}: expected a positive number of pixels "
            "(an int, or [height, width])"
        )
    lr = OmegaConf.select(cfg, "optimizer.lr", default=None)
    if lr is not None and (not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0):
        raise UserError(f"optimizer.lr={lr!r}: expected a positive number (e.g. 1e-3)")


def family_of(name: str) -> Family:
    """The registered family ``name``; a ``UserError`` listing the families otherwise."""
    try:
        return get_family(name)
    except RegistryError as err:
        raise UserError(str(err)) from None


def check_model_task(cfg: DictConfig) -> Family:
    """The chosen task must be registered, and the chosen model and dataset must belong to it;
    returns the task's family."""
    family = family_of(cfg.task.name)
    task, name = family.name, cfg.model.name
    try:
        serves = model_info(name).tasks
    except RegistryError:
        serves = ()
    if task not in serves:
        raise UserError(
            f"model {name!r} is not a {task} model; models of task {task!r}: "
            f"{', '.join(list_models(task)) or '(none yet)'}"
        )
    check_data_task(cfg, task)
    return family


def check_data_task(cfg: DictConfig, task: str) -> None:
    """The chosen dataset must be one of ``task``'s (when its data module says)."""
    data_owner = data_task(cfg.data.get("_target_"))
    if data_owner is not None and data_owner != task:
        ours = [n for n, t in data_config_tasks().items() if t == task]
        raise UserError(
            f"data={data_choice(cfg)} is a {data_owner} dataset, not a {task} one; "
            f"{task} datasets: {', '.join(ours) or '(none yet)'}"
        )


def data_task(target: str | None) -> str | None:
    """The task family of a data module class path (``None`` when it does not say)."""
    if not target:
        return None
    try:
        return getattr(hydra.utils.get_class(target), "task", None)
    except Exception:  # an unknown target is reported when the data module is built
        return None


def config_dirs() -> list[Path]:
    """The package's ``configs/`` and the extra config folders of plug-in families."""
    extra = [get_family(n).config_dir for n in list_families()]
    return [Path(CONFIG_DIR), *(Path(d) for d in extra if d is not None)]


def data_config_tasks() -> dict[str, str | None]:
    """Task family of every ``configs/data/*.yaml`` (following its defaults for the target)."""
    files = {p.stem: p for d in reversed(config_dirs()) for p in (d / "data").glob("*.yaml")}

    def target_of(name: str) -> str | None:
        raw = OmegaConf.load(files[name])
        if "_target_" in raw:
            return raw["_target_"]
        parents = [d for d in raw.get("defaults", []) if isinstance(d, str) and d != "_self_"]
        return target_of(parents[0]) if parents else None

    return {n: data_task(target_of(n)) for n in sorted(files)}


def data_choice(cfg: DictConfig) -> str:
    """The ``data=`` option of this run, as the user typed it."""
    try:
        return HydraConfig.get().runtime.choices.get("data") or "?"
    except ValueError:  # composed outside a Hydra run (tests, benchmarks)
        return str(cfg.data.get("_target_", "?")).rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- building blocks
class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are serialised in memory and renamed into place: a crash mid-write never
    leaves a truncated ``.ckpt``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


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
    return pl.Trainer(
        **kwargs,
        logger=loggers or False,
        callbacks=build_callbacks(cfg, run_dir),
        enable_progress_bar=cfg.callbacks.progress != "none",
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # SeededSampler shards by rank itself
        **extra,
    )


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


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A visionzoo checkpoint as plain data (``weights_only``: nothing in it is executed), or a
    ``UserError`` saying why the file is not one."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path {ckpt_path!r} does not exist; pass a .ckpt written by train.py")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {ckpt_path!r} is empty (0 bytes); use another .ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(
            f"cannot read checkpoint {ckpt_path!r}: it is incomplete or not a PyTorch "
            f"checkpoint ({reason})"
        ) from err
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if hp.get("task_name") not in list_families() or "state_dict" not in ckpt:
        kind = type(ckpt).__name__
        raise UserError(
            f"{ckpt_path!r} is not a visionzoo checkpoint (a {kind} without a known task_name "
            "and state_dict); pass a .ckpt written by train.py"
        )
    return ckpt


def check_resume(ckpt_path: str, module: pl.LightningModule) -> None:
    """Resuming continues the same run: the checkpoint's task, model and classes must be the
    configured ones. Says what differs instead of Lightning's list of state-dict keys."""
    saved = read_checkpoint(ckpt_path)["hyper_parameters"]
    now = module.hparams
    differences = []
    if saved["task_name"] != now["task_name"]:
        differences.append(f"task {saved['task_name']!r} vs {now['task_name']!r}")
    old_model = {k: v for k, v in saved["model"].items() if k not in RUNTIME_KEYS}
    new_model = {k: v for k, v in now["model"].items() if k not in RUNTIME_KEYS}
    for key in sorted(set(old_model) | set(new_model)):
        if old_model.get(key) != new_model.get(key):
            differences.append(f"model.{key} {old_model.get(key)!r} vs {new_model.get(key)!r}")
    old_classes = (saved.get("data_meta") or {}).get("class_names")
    new_classes = (now.get("data_meta") or {}).get("class_names")
    if old_classes != new_classes:
        differences.append(f"classes {old_classes} vs {new_classes}")
    if differences:
        raise UserError(
            f"cannot resume from {ckpt_path!r}: it was trained with another setup "
            f"(checkpoint vs now: {'; '.join(differences)}). Resume with the checkpoint's "
            "settings, or start a new run without ckpt_path"
        )


def override_hparams(hp: dict[str, Any], changes: dict[str, Any], prefix: str) -> None:
    """Apply ``changes`` (nested plain data) to the saved hyper-parameters ``hp`` in place;
    every key must exist there (``prefix`` names the section in the error)."""
    for key, value in changes.items():
        if key not in hp:
            valid = ", ".join(sorted(hp)) or "(none)"
            raise UserError(
                f"the checkpoint has no option {prefix}{key}; options it records: {valid}"
            )
        if isinstance(value, dict) and isinstance(hp[key], dict):
            override_hparams(hp[key], value, f"{prefix}{key}.")
        else:
            hp[key] = value


def load_checkpoint_module(
    ckpt_path: str, task: dict[str, Any] | None = None, data: dict[str, Any] | None = None
) -> pl.LightningModule:
    """Rebuild a task module from a checkpoint alone (weights_only, no pickled objects);
    ``task`` and ``data`` change recorded options (``task.inference.mode``, ``data.root``)."""
    ckpt = read_checkpoint(ckpt_path)
    hp = ckpt["hyper_parameters"]
    override_hparams(hp, task or {}, "task.")
    override_hparams(hp.setdefault("data", {}), data or {}, "data.")
    module = get_family(hp["task_name"]).module(**hp)
    module.load_state_dict(ckpt["state_dict"])
    module.best = ckpt.get("visionzoo", {}).get("best")
    return module.eval()


def metric_only_module(cfg: DictConfig) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """``eval.py`` without ``ckpt_path``: the task module of a model that has no learnt weights
    (registered ``trainable=False``) and the configured data module."""
    if "name" not in (cfg.get("task") or {}):
        raise UserError(
            "eval.py needs ckpt_path=<file.ckpt>, or task=<family> model=<metric-only model> "
            "to score a dataset without a checkpoint"
        )
    family = check_model_task(cfg)
    if model_info(cfg.model.name).trainable:
        only = family.metric_only_models()
        raise UserError(
            f"model {cfg.model.name!r} has learnt weights: give ckpt_path=<file.ckpt>. Models "
            f"of task {family.name!r} that run without one: {', '.join(only) or '(none)'}"
        )
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
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
        datamodule = build_datamodule(data if other_dataset else module.hparams.data)
        datamodule.prepare_data()
    else:
        module, datamodule = metric_only_module(cfg)
    run_dir = run_dir_of()
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
    (run_dir / "eval_metrics.json").write_text(json.dumps(out, indent=1))
    print_summary(f"eval on {stage}", metrics, {"metrics file": str(run_dir / "eval_metrics.json")})
    return metrics


def predict(cfg: DictConfig) -> None:
    """Write predictions (JSON + rendered pictures) for an image or a folder of images."""
    from visionzoo.core.io import IMAGE_SUFFIXES, list_images

    module = load_checkpoint_module(cfg.ckpt_path)
    family = get_family(module.hparams.task_name)
    if not family.predict:
        raise UserError(f"predict.py is not supported for task {family.name!r}")
    source = Path(cfg.input)
    if source.is_dir():
        files = list_images(source)
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        files = [source]
    else:
        raise UserError(f"input={cfg.input!r} is neither an image file nor a folder of images")
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule = build_datamodule(module.hparams.data)
    records = module.predict_files(files, out_dir, datamodule)
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
    if isinstance(err, MissingMandatoryValue):
        key = err.full_key or "?"
        return f"{key} is required but not set; add {key}=<value> to the command line"
    if isinstance(err, (UserError, *USER_ERRORS)):
        return user_message(err)
    if isinstance(err, OSError) and err.filename is not None:  # read-only, full or gone
        return (
            f"{err.strerror or err}: {str(err.filename)!r}; check that the folder exists, is "
            "writable and has free space (runs go under paths.output_root, i.e. "
            "$VISIONZOO_OUTPUT)"
        )
    return None


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
        print(f"error: {err}", file=sys.stderr)
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


def check_data_entry() -> None:
    _entry("check_data", check_data)


__all__ = [
    "check_data_entry",
    "eval_entry",
    "evaluate",
    "export_entry",
    "predict",
    "predict_entry",
    "train",
    "train_entry",
]
