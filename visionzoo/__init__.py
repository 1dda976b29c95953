"""visionzoo: one CLI and Lightning modules for six computer-vision task families."""

from visionzoo import losses, models  # noqa: F401  (fills the registries)
from visionzoo.registry import (
    create_loss,
    create_model,
    list_losses,
    list_models,
    model_task,
    register_loss,
    register_model,
)

__all__ = [
    "create_loss",
    "create_model",
    "list_losses",
    "list_models",
    "model_task",
    "register_loss",
    "register_model",
]
__version__ = "0.1.0"
