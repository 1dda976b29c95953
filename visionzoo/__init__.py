"""visionzoo: one CLI and Lightning modules for six computer-vision task families."""

# Task families: each import registers one family with its models, datasets and generators.
from visionzoo import (  # noqa: F401, I001
    detection,
    losses,  # noqa: F401  (fills the loss registry)
    segmentation,
)
from visionzoo.registry import (
    create_loss,
    create_model,
    get_family,
    list_families,
    list_losses,
    list_models,
    model_info,
    model_tasks,
    register_loss,
    register_model,
)

__all__ = [
    "create_loss",
    "create_model",
    "get_family",
    "list_families",
    "list_losses",
    "list_models",
    "model_info",
    "model_tasks",
    "register_loss",
    "register_model",
]
__version__ = "0.1.0"
