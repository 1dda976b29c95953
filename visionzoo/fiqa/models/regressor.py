"""Learnt quality regressors on recognition pseudo-labels: FaceQnet (Hernandez-Ortega et al.
2019, "FaceQnet: quality assessment for face recognition based on deep learning"; labels:
similarity to the identity's most compliant image, squared-error regression) and SDD-FIQA (Ou
et al. 2021, "SDD-FIQA: unsupervised face image quality assessment with similarity
distribution distance"; labels: Wasserstein distance of intra- and inter-class similarity
distributions, Smooth-L1 regression). Both are a timm trunk (pooled features) → dropout → FC
→ one quality value in label units (0–100). The FC's output is in units of the training labels'
spread about their mean (``set_target_stats``), so the head starts at the labels' level whatever
range they occupy (similarity-to-best labels sit in a narrow band near 100)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from visionzoo.recognition.models import read_state_dict
from visionzoo.registry import register_model


class QualityRegressor(nn.Module):
    """``(B, in_chans, H, W) -> (B,)`` quality: ``100 × (mean + std × fc(dropout(trunk(x))))``
    with the training labels' mean and standard deviation / 100 (buffers, saved with the
    weights; 0 and 1 until ``set_target_stats``).

    ``backbone``: a timm model name (random init, or ``pretrained_file``: a local timm state
    dict whose classifier is dropped). ``loss_name``: ``mse`` (FaceQnet) or ``smooth_l1``
    (SDD-FIQA), applied by the task module on labels / 100; ``default_labels``: the
    pseudo-labels it learns when a recogniser is given."""

    def __init__(
        self,
        *,
        backbone: str = "resnet18",
        pretrained_file: str | None = None,
        dropout: float = 0.2,
        in_chans: int = 3,
        loss_name: str = "mse",
        default_labels: str = "faceqnet",
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            raise ValueError(f"model.backbone={backbone!r} is not a timm model name")
        self.trunk = timm.create_model(
            backbone, pretrained=False, num_classes=0, global_pool="avg", in_chans=in_chans
        )
        if pretrained_file:
            state = read_state_dict(pretrained_file)
            classifier = self.trunk.pretrained_cfg.get("classifier") or ""
            state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
            self.trunk.load_state_dict(state, strict=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.trunk.num_features, 1)
        self.register_buffer("target_mean", torch.tensor(0.0))
        self.register_buffer("target_std", torch.tensor(1.0))
        self.loss_name = loss_name
        self.default_labels = default_labels

    @torch.no_grad()
    def set_target_stats(self, labels: Any) -> None:
        """Set the output's centre and scale from training labels (0–100; NaNs ignored)."""
        t = torch.as_tensor(labels, dtype=torch.float64).flatten() / 100.0
        t = t[torch.isfinite(t)]
        if len(t):
            self.target_mean.fill_(float(t.mean()))
            self.target_std.fill_(max(float(t.std(unbiased=False)), 1e-3))

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        z = self.fc(self.dropout(self.trunk(images))).squeeze(1)
        return 100.0 * (self.target_mean + self.target_std * z)


@register_model("fiqa", "faceqnet", higher_is_better=True)
def faceqnet(**kwargs: Any) -> QualityRegressor:
    """FaceQnet: regression (MSE) on similarity-to-best-image labels."""
    return QualityRegressor(**{"loss_name": "mse", "default_labels": "faceqnet", **kwargs})


@register_model("fiqa", "sddfiqa", higher_is_better=True)
def sddfiqa(**kwargs: Any) -> QualityRegressor:
    """SDD-FIQA: regression (Smooth-L1) on similarity-distribution-distance labels."""
    return QualityRegressor(**{"loss_name": "smooth_l1", "default_labels": "sddfiqa", **kwargs})
