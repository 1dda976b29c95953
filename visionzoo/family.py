"""The contract between a task family and the shared code: one ``Family`` object per family.

A family package (``visionzoo/<name>/__init__.py``) builds one ``Family`` and registers it with
``visionzoo.registry.register_family``. The CLI, the benchmark and the contract tests ask that
object what the family can do; they never import a family by name or probe its classes.

Optional capabilities are plain callables (or ``None`` where the family has none):

- ``check_data(datamodule, splits, decode_images) -> str``: a dataset report for
  ``check_data.py``;
- ``export(module, output, image_size, opset, check) -> str``: ONNX export for ``export.py``,
  returning the line to print;
- ``compare(module, first, second, far, datamodule) -> dict``: ``compare.py``, the similarity
  of two images and a decision at a false-accept rate (recognition);
- ``bench``: the module holding the family's plain-loop benchmark step (see ``visionzoo.bench``).

``eval.py`` runs without a checkpoint for the family's metric-only models (registered with
``trainable=False``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from visionzoo.registry import list_models, model_info

PLUGINS_ENV = "VISIONZOO_PLUGINS"


@dataclass(frozen=True)
class Family:
    """What a task family is and what it supports.

    ``module`` is the family's LightningModule class (a ``VisionModule``); ``default_model`` and
    ``default_data`` are the choices its ``configs/task/<name>.yaml`` makes; ``config_dir`` is an
    extra Hydra config folder searched after the package's own ``configs/`` (for families that
    live outside this repository); ``predict`` says whether ``module.predict_files`` exists.
    """

    name: str
    module: type
    default_model: str
    default_data: str
    description: str = ""
    predict: bool = True
    check_data: Callable[..., str] | None = None
    export: Callable[..., str] | None = None
    compare: Callable[..., dict] | None = None
    bench: str | None = None
    config_dir: Path | None = None

    def models(self) -> list[str]:
        """The registered models of this family."""
        return list_models(self.name)

    def metric_only_models(self) -> list[str]:
        """Models without learnt weights, which ``eval.py`` runs without a checkpoint."""
        return [m for m in self.models() if not model_info(m).trainable]

    def bench_module(self) -> ModuleType | None:
        """The family's benchmark module (imported on demand: it may import test-only tools)."""
        return importlib.import_module(self.bench) if self.bench else None

    @property
    def capabilities(self) -> dict[str, bool]:
        """What the CLI can do with this family, by entry point."""
        return {
            "train": True,
            "eval": True,
            "eval_without_checkpoint": bool(self.metric_only_models()),
            "predict": self.predict,
            "export": self.export is not None,
            "compare": self.compare is not None,
            "check_data": self.check_data is not None,
            "benchmark": self.bench is not None,
        }


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the modules named in ``$VISIONZOO_PLUGINS`` (comma-separated), so families, models
    and losses defined outside this package register before the CLI composes a config."""
    names = [n.strip() for n in (spec or os.environ.get(PLUGINS_ENV, "")).split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(
                f"{PLUGINS_ENV}: cannot import plug-in module {name!r} ({err}); "
                "check the name and that it is on PYTHONPATH"
            ) from err
    return names
