"""Command-line and config checks, run before anything is built: unknown keys, unreadable
overrides, option types and ranges, and whether the chosen model and dataset belong to the task.
Part of the CLI, the only Hydra-aware code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from visionzoo.family import Family
from visionzoo.registry import RegistryError, get_family, list_families, list_models, model_info

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
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
    ``data`` / ``task`` sections of eval.yaml, checked against the checkpoint later. With
    ``task=<family>`` (a metric-only model, no checkpoint) the task's own config holds both
    sections, so the arguments stay as they are."""
    chosen = {a.split("=", 1)[0] for a in _override_args(argv)}
    if "task" in chosen:
        return list(argv)
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
    "task.plot_every": (1, False),
}


# Documented options with a fixed set of values.
CHOICE_OPTIONS: dict[str, tuple[Any, ...]] = {
    "callbacks.progress": ("rich", "tqdm", "none"),
    "task.inference.mode": ("whole", "slide"),
    "data.pin_memory": ("auto", True, False),
    "model.channels_last": ("auto", True, False),
}
# Documented yes/no options (a typo like `maybe` would otherwise be truthy).
BOOL_OPTIONS = (
    "task.plots",
    "task.inference.flip",
    "callbacks.lr_monitor",
    "callbacks.checkpoint.save_last",
    "callbacks.checkpoint.asynchronous",
    "data.persistent_workers",
    "data.eval_native_labels",
    "data.rect_eval",
    "data.cache_images",
    "model.compile",
    "save_predictions",
)
# Sections whose every leaf is a number (probabilities, gains, ranges) or a list of numbers.
NUMBER_SECTIONS = ("data.augment",)
# Options that take `auto` or a number ≥ 0.
AUTO_NUMBER_OPTIONS = ("task.warmup_bias_lr", "task.warmup_momentum")


def _numbers_only(node: Any, key: str) -> None:
    if isinstance(node, DictConfig):
        for k in node:
            _numbers_only(node[k], f"{key}.{k}")
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            _numbers_only(v, f"{key}[{i}]")
    elif node is not None and (not isinstance(node, int | float) or isinstance(node, bool)):
        raise UserError(f"{key}={node!r}: expected a number (see the data config's comment)")


def check_values(cfg: DictConfig) -> None:
    """Types and ranges of the documented options (``NUMERIC_OPTIONS``, ``CHOICE_OPTIONS``,
    ``NUMBER_SECTIONS``, ``data.image_size``, ``optimizer.lr``), each refused in one line
    naming the key and what is valid."""
    for key, choices in CHOICE_OPTIONS.items():
        value = OmegaConf.select(cfg, key, default="absent")
        if value != "absent" and not any(
            value is c or value == c and type(value) is type(c) for c in choices
        ):
            shown = ", ".join(str(c).lower() if isinstance(c, bool) else c for c in choices)
            raise UserError(f"{key}={value!r}: choose one of {shown}")
    for key in BOOL_OPTIONS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not isinstance(value, bool):
            raise UserError(f"{key}={value!r}: expected true or false")
    prefix = OmegaConf.select(cfg, "data.list_prefix", default=None)
    if prefix is not None and not isinstance(prefix, DictConfig):
        raise UserError(
            f"data.list_prefix={prefix!r}: expected a mapping of listed path prefixes to their "
            "replacement, e.g. data.list_prefix=\"{/home/author/CamVid: ''}\""
        )
    for key in NUMBER_SECTIONS:
        _numbers_only(OmegaConf.select(cfg, key, default=None), key)
    for key in AUTO_NUMBER_OPTIONS:
        value = OmegaConf.select(cfg, key, default="auto")
        if value != "auto" and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 0
        ):
            raise UserError(f"{key}={value!r}: expected auto or a number ≥ 0")
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
        shown = sizes if isinstance(size, ListConfig) else size
        raise UserError(
            f"data.image_size={shown!r}: expected a positive number of pixels (an int, or "
            "[height, width])"
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
