"""Name → factory registries for task families, models, losses and synthetic datasets.

Follows timm's pattern: thin decorated factories fill plain dicts, and one ``create_*`` call
builds anything by name. Every registry refuses a duplicate name. A model may serve several task
families (a recognition backbone is also a face-quality model) and carries metadata the family
and the CLI read (``trainable``, ``higher_is_better``).

Nothing here names a family: a family registers itself (``register_family``) when its package is
imported, and its models register with ``register_model(task=<its name>)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch.nn as nn

if TYPE_CHECKING:
    from visionzoo.family import Family

F = TypeVar("F", bound=Callable[..., Any])


class RegistryError(KeyError):
    """Raised for unknown or duplicate names; the message lists what is available."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its factory and what families need to know about it.

    ``trainable=False`` marks a metric-only model (no learnt weights: PSNR, NIQE, a hand-crafted
    quality measure), which ``eval.py`` runs without a checkpoint. ``higher_is_better`` is the
    direction of the model's own score when it has one (``None``: not applicable); the CLI sets
    the family's ``monitor_mode`` from it.
    """

    name: str
    tasks: tuple[str, ...]
    factory: Callable[..., nn.Module]
    trainable: bool = True
    higher_is_better: bool | None = None


_FAMILIES: dict[str, Family] = {}
_MODELS: dict[str, ModelInfo] = {}
_LOSSES: dict[str, Callable[..., nn.Module]] = {}
_GENERATORS: dict[str, Callable[..., None]] = {}


def _add(table: dict[str, Any], kind: str, key: str, value: Any) -> None:
    if key in table:
        raise RegistryError(f"{kind} {key!r} is registered twice")
    table[key] = value


# --------------------------------------------------------------------------------- families
def register_family(family: Family) -> Family:
    """Register a task family (called once, from the family package's ``__init__``)."""
    _add(_FAMILIES, "task family", family.name, family)
    return family


def list_families() -> list[str]:
    """Sorted names of the registered task families."""
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    """The registered family ``name``; the error lists the available ones."""
    if name not in _FAMILIES:
        raise RegistryError(
            f"task {name!r} is not available; available tasks: {', '.join(list_families())}"
        )
    return _FAMILIES[name]


# ----------------------------------------------------------------------------------- models
def register_model(
    task: str | tuple[str, ...],
    name: str | None = None,
    *,
    trainable: bool = True,
    higher_is_better: bool | None = None,
) -> Callable[[F], F]:
    """Register a model factory (class or function) under ``name`` for one or more tasks."""
    tasks = (task,) if isinstance(task, str) else tuple(task)

    def decorator(fn: F) -> F:
        key = name or fn.__name__.lower()
        _add(_MODELS, "model", key, ModelInfo(key, tasks, fn, trainable, higher_is_better))
        return fn

    return decorator


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally only those of one task family."""
    return sorted(k for k, info in _MODELS.items() if task is None or task in info.tasks)


def model_info(name: str) -> ModelInfo:
    """Everything registered about model ``name``; the error lists the models."""
    if name not in _MODELS:
        raise RegistryError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        )
    return _MODELS[name]


def model_tasks(name: str) -> tuple[str, ...]:
    """The task families a registered model serves."""
    return model_info(name).tasks


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name with keyword arguments."""
    return model_info(name).factory(**kwargs)


# ----------------------------------------------------------------------------------- losses
def register_loss(name: str | None = None) -> Callable[[F], F]:
    """Register a loss factory (usually an ``nn.Module`` class) under ``name``."""

    def decorator(fn: F) -> F:
        _add(_LOSSES, "loss", name or fn.__name__.lower(), fn)
        return fn

    return decorator


def list_losses() -> list[str]:
    """Sorted names of registered losses."""
    return sorted(_LOSSES)


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered loss by name with keyword arguments."""
    if name not in _LOSSES:
        raise RegistryError(f"unknown loss {name!r}; registered losses: {', '.join(list_losses())}")
    return _LOSSES[name](**kwargs)


# ------------------------------------------------------------------------ synthetic datasets
def register_generator(name: str) -> Callable[[F], F]:
    """Register ``fn(out_dir: Path, **params)`` that writes a synthetic dataset into
    ``out_dir`` in a family's real on-disk format."""

    def decorator(fn: F) -> F:
        _add(_GENERATORS, "synthetic dataset", name, fn)
        return fn

    return decorator


def list_generators() -> list[str]:
    """Sorted names of the registered synthetic-dataset generators."""
    return sorted(_GENERATORS)


def get_generator(name: str) -> Callable[..., None]:
    """The generator registered as ``name``; the error lists the available ones."""
    if name not in _GENERATORS:
        raise RegistryError(
            f"unknown synthetic dataset {name!r}; available: {', '.join(list_generators())}"
        )
    return _GENERATORS[name]
