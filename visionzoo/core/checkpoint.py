"""Checkpoint I/O shared by every family: atomic writes, and reading a checkpoint back as plain
data (``weights_only``: nothing in the file is executed) with a reason when it cannot be used."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from visionzoo.core.module import RUNTIME_KEYS
from visionzoo.core.utils import atomic_write_bytes
from visionzoo.registry import get_family, list_families


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are serialised in memory and renamed into place: a crash mid-write never
    leaves a truncated ``.ckpt``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A visionzoo checkpoint as plain data (``weights_only``: nothing in it is executed), or a
    ``CheckpointError`` saying why the file is not one."""
    path = Path(ckpt_path)
    if path.is_dir():
        found = sorted([*path.glob("*.ckpt"), *path.glob("checkpoints/*.ckpt")])[:3]
        hint = f" (it holds e.g. {', '.join(str(f) for f in found)})" if found else ""
        raise CheckpointError(
            f"ckpt_path {ckpt_path!r} is a folder; pass the .ckpt file itself{hint}"
        )
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path {ckpt_path!r} does not exist; pass a .ckpt written by train.py"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {ckpt_path!r} is empty (0 bytes); use another .ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"cannot read checkpoint {ckpt_path!r}: it is incomplete or not a PyTorch "
            f"checkpoint ({reason})"
        ) from err
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if hp.get("task_name") not in list_families() or "state_dict" not in ckpt:
        kind = type(ckpt).__name__
        raise CheckpointError(
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
        raise CheckpointError(
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
            raise CheckpointError(
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
    module.on_load_checkpoint(ckpt)  # the module's own extra state (as Lightning restores it)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()
