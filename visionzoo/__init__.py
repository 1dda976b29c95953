"""visionzoo: one CLI and Lightning modules for six computer-vision task families."""

# The loss library, then each task family: importing a family registers it with its models,
# datasets and synthetic generators. Adding a family adds its name here.
from visionzoo import (  # noqa: F401
    aesthetics,
    detection,
    fiqa,
    iqa,
    losses,
    recognition,
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
