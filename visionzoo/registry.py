"""Name → factory registries for models and losses.

Follows timm's pattern: thin decorated factories fill plain dicts, and one ``create_*`` call
builds anything by name. A model is registered under exactly one task family so the CLI can tell
a user which models belong to the task they asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

TASKS = ("iqa", "fiqa", "aesthetics", "detection", "recognition", "segmentation")

F = TypeVar("F", bound=Callable[..., Any])

_MODELS: dict[str, tuple[str, Callable[..., nn.Module]]] = {}
_LOSSES: dict[str, Callable[..., nn.Module]] = {}


class RegistryError(KeyError):
    """Raised for unknown or duplicate names; the message lists what is available."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


def register_model(task: str, name: str | None = None) -> Callable[[F], F]:
    """Register a model factory (class or function) under ``name`` for ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")

    def decorator(fn: F) -> F:
        key = name or fn.__name__.lower()
        if key in _MODELS:
            raise RegistryError(f"model {key!r} is registered twice")
        _MODELS[key] = (task, fn)
        return fn

    return decorator


def register_loss(name: str | None = None) -> Callable[[F], F]:
    """Register a loss factory (usually an ``nn.Module`` class) under ``name``."""

    def decorator(fn: F) -> F:
        key = name or fn.__name__.lower()
        if key in _LOSSES:
            raise RegistryError(f"loss {key!r} is registered twice")
        _LOSSES[key] = fn
        return fn

    return decorator


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally only those of one task family."""
    return sorted(k for k, (t, _) in _MODELS.items() if task is None or t == task)


def list_losses() -> list[str]:
    """Sorted names of registered losses."""
    return sorted(_LOSSES)


def model_task(name: str) -> str:
    """The task family a registered model belongs to."""
    if name not in _MODELS:
        raise RegistryError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        )
    return _MODELS[name][0]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name with keyword arguments."""
    model_task(name)  # raises with the list of models
    return _MODELS[name][1](**kwargs)


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered loss by name with keyword arguments."""
    if name not in _LOSSES:
        raise RegistryError(f"unknown loss {name!r}; registered losses: {', '.join(list_losses())}")
    return _LOSSES[name](**kwargs)
