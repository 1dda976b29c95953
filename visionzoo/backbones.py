"""timm networks (feature encoders, pooled trunks), with pretrained weights from a local file,
or, when asked for (``pretrained=True``) and online, from timm's hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn


def create_timm_model(
    name: str,
    *,
    pretrained_file: str | None = None,
    pretrained: bool = False,
    role: str = "model",
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` with weights from ``pretrained_file`` (a local
    timm/torch state dict of the classification model: ``.pth``, ``.bin`` or
    ``.safetensors``), else with ``pretrained=True`` timm's default pretrained weights
    (downloaded from the Hugging Face hub, so online only), else none. ``role`` names the
    network in the unknown-name error (``encoder``, ``backbone``)."""
    import timm  # imported on use: it costs seconds at start-up for every command

    if name not in timm.list_models():
        raise ValueError(
            f"unknown timm {role} {name!r}; pick one of timm.list_models(), e.g. resnet18, "
            "resnet50, efficientnet_b0, convnext_tiny"
        )
    if pretrained_file:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights file {str(path)!r} does not exist; set "
                "model.pretrained_file to a local timm checkpoint or null to train from scratch"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    return timm.create_model(name, pretrained=bool(pretrained_file) or pretrained, **kwargs)


def create_encoder(
    name: str,
    *,
    pretrained_file: str | None = None,
    pretrained: bool = False,
    in_chans: int = 3,
    out_indices: tuple[int, ...] | None = None,
    output_stride: int | None = None,
) -> nn.Module:
    """A timm ``features_only`` encoder returning a list of feature maps (weights as in
    ``create_timm_model``). Decoders size themselves from ``encoder.feature_info.channels()``
    and ``.reduction()``."""
    kwargs: dict = {"features_only": True, "in_chans": in_chans}
    if out_indices is not None:
        kwargs["out_indices"] = out_indices
    if output_stride is not None and output_stride != 32:
        kwargs["output_stride"] = output_stride
    return create_timm_model(
        name, pretrained_file=pretrained_file, pretrained=pretrained, role="encoder", **kwargs
    )
