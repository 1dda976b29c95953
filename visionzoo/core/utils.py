"""Small helpers shared across the package."""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def import_target(path: str) -> Callable[..., Any]:
    """``"package.module.attr"`` → the attribute, with an error naming the bad path."""
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {path!r}: {err}") from err


def call_spec(spec: dict[str, Any], *args: Any, **extra: Any) -> Any:
    """Call a ``{"_target_": "pkg.fn", **kwargs}`` spec (the plain-data form of a Hydra partial)
    with positional ``args`` and ``extra`` keyword arguments; keys starting with ``_`` are
    Hydra's and are skipped."""
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    return import_target(spec["_target_"])(*args, **kwargs, **extra)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``, so
    a crash never leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from the group
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def trains_on_cuda(trainer: Any) -> bool:
    """Whether ``trainer`` (a Lightning trainer or ``None``) puts the model on a CUDA device."""
    return trainer is not None and trainer.strategy.root_device.type == "cuda"
