"""The classical metrics of ``visionzoo.iqa.classical`` as metric-only models (no learnt
weights: ``eval.py task=iqa model=<name>`` runs them without a checkpoint).

Scores are computed in float64 from images in [0, 1]; the keyword arguments are those of the
metric functions (e.g. ``channels``, ``downsample``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from visionzoo.iqa import classical
from visionzoo.registry import register_model


class ClassicalMetric(nn.Module):
    """A training-free metric ``fn(image[, reference], **kwargs)`` → (B,) as a model.

    ``forward(image (B, 3, H, W), reference (B, 3, H, W) | None)`` → (B,) float32 scores."""

    trainable = False

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        *,
        needs_reference: bool,
        higher_is_better: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.fn, self.kwargs = fn, kwargs
        self.needs_reference, self.higher_is_better = needs_reference, higher_is_better

    def forward(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        x = image.double().clamp(0, 1)
        if not self.needs_reference:
            return self.fn(x, **self.kwargs).float()
        if reference is None:
            raise ValueError(
                f"{self.fn.__name__} is a full-reference metric: it needs reference images "
                "(a full-reference dataset, or predict.py reference=<image|folder>)"
            )
        return self.fn(x, reference.double().clamp(0, 1), **self.kwargs).float()


@register_model("iqa", "psnr", trainable=False, higher_is_better=True)
def psnr_model(**kwargs: Any) -> ClassicalMetric:
    """PSNR (dB) over all RGB values, as scikit-image; ``channels=y`` for luma."""
    return ClassicalMetric(classical.psnr, needs_reference=True, higher_is_better=True, **kwargs)


@register_model("iqa", "ssim", trainable=False, higher_is_better=True)
def ssim_model(**kwargs: Any) -> ClassicalMetric:
    """SSIM (Wang et al., TIP 2004) on luma, ``ssim.m``'s automatic downsampling."""
    return ClassicalMetric(classical.ssim, needs_reference=True, higher_is_better=True, **kwargs)


@register_model("iqa", "ms_ssim", trainable=False, higher_is_better=True)
def ms_ssim_model(**kwargs: Any) -> ClassicalMetric:
    """MS-SSIM (Wang et al., 2003), five scales; needs images ≥ 176 px per side."""
    return ClassicalMetric(classical.ms_ssim, needs_reference=True, higher_is_better=True, **kwargs)


@register_model("iqa", "vsi", trainable=False, higher_is_better=True)
def vsi_model(**kwargs: Any) -> ClassicalMetric:
    """VSI, visual saliency-induced index (Zhang et al., TIP 2014)."""
    return ClassicalMetric(classical.vsi, needs_reference=True, higher_is_better=True, **kwargs)


@register_model("iqa", "niqe", trainable=False, higher_is_better=False)
def niqe_model(**kwargs: Any) -> ClassicalMetric:
    """NIQE (Mittal et al., SPL 2012) with the official LIVE pristine model; needs ≥ 96 px."""
    return ClassicalMetric(classical.niqe, needs_reference=False, higher_is_better=False, **kwargs)


@register_model("iqa", "brisque", trainable=False, higher_is_better=False)
def brisque_model(**kwargs: Any) -> ClassicalMetric:
    """BRISQUE (Mittal et al., TIP 2012) with the official LIVE SVR model."""
    return ClassicalMetric(
        classical.brisque, needs_reference=False, higher_is_better=False, **kwargs
    )
