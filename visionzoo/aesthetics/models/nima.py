"""NIMA: a timm classification backbone predicting the distribution of aesthetic scores."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from visionzoo.aesthetics.models.common import head_output, output_head
from visionzoo.registry import register_model


def create_classifier_trunk(name: str, *, pretrained_file: str | None, in_chans: int) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``): (B, C, H, W) → pooled
    (B, num_features). Weights come from a local file only, as in ``visionzoo.backbones``."""
    import timm

    if name not in timm.list_models():
        raise ValueError(
            f"unknown timm backbone {name!r}; pick one of timm.list_models(), e.g. resnet10t, "
            "resnet18, mobilenetv3_small_050, efficientnet_b0"
        )
    kwargs: dict = {"num_classes": 0, "in_chans": in_chans}
    if pretrained_file:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights file {str(path)!r} does not exist; set "
                "model.pretrained_file to a local timm checkpoint or null to train from scratch"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    return timm.create_model(name, pretrained=bool(pretrained_file), **kwargs)


@register_model("aesthetics", "nima")
class NIMA(nn.Module):
    """Neural Image Assessment (Talebi & Milanfar, TIP 2018): backbone features, dropout and one
    FC layer to a softmax over the 10 score bins; mean and standard deviation of the score come
    from that distribution. With ``objective=binary|regression`` the FC layer has one output.

    ``forward(image (B, 3, H, W), crops=None)`` → (B, 10) logits, or (B,) for one output."""

    uses_crops = False

    def __init__(
        self,
        *,
        backbone: str = "test_resnet",
        pretrained_file: str | None = None,
        objective: str = "distribution",
        dropout: float = 0.75,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.objective = objective
        self.backbone = create_classifier_trunk(
            backbone, pretrained_file=pretrained_file, in_chans=in_chans
        )
        self.head = output_head(objective, self.backbone.num_features, dropout)

    def forward(self, image: torch.Tensor, crops: torch.Tensor | None = None) -> torch.Tensor:
        return head_output(self.objective, self.head(self.backbone(image)))
