"""Hand-crafted quality: the ISO/IEC 29794-5-style measures of ``visionzoo.fiqa.measures``
combined by a configurable weighting (``model=handcrafted``, metric-only), or a small learnt
regressor from the same measures to a quality label (``model=handcrafted_mlp``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from visionzoo.fiqa.measures import (
    DEFAULT_SIGMOIDS,
    IMAGE_MEASURES,
    LANDMARK_MEASURES,
    combined_score,
    component_scores,
    image_measures,
    landmark_measures,
)
from visionzoo.registry import register_model

DEFAULT_WEIGHTS = {
    "sharpness_laplacian": 1.0,
    "sharpness_gradient": 1.0,
    "luminance_mean": 1.0,
    "under_exposure": 1.0,
    "over_exposure": 1.0,
    "dynamic_range": 0.5,
    "contrast": 0.5,
    "illumination_uniformity": 0.5,
    "face_symmetry": 1.0,
    "noise": 1.0,
    "yaw": 1.0,
    "pitch": 0.5,
    "roll": 0.5,
}


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Faces normalised to [-1, 1] (recognition's mean/std 0.5) back to [0, 1]."""
    return (images.float() * 0.5 + 0.5).clamp(0, 1)


class HandcraftedQuality(nn.Module):
    """Raw measures, component scores (``sigmoids``: measure → [[centre, slope], ...]) and
    their weighted mean (``weights``: component → weight; ``combine``: arithmetic or
    geometric) as the quality (B,) in 0–100."""

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        sigmoids: Mapping[str, Sequence[Sequence[float]]] | None = None,
        combine: str = "geometric",
    ) -> None:
        super().__init__()
        self.combine = combine
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.sigmoids = {**DEFAULT_SIGMOIDS, **dict(sigmoids or {})}
        known = set(IMAGE_MEASURES) | set(LANDMARK_MEASURES)
        unknown = sorted(set(self.weights) - known)
        if unknown:
            raise ValueError(
                f"model.weights: unknown component(s) {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(known))}"
            )

    def measures(
        self, images: torch.Tensor, landmarks: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Raw values (B,) of every measure (landmark ones NaN without landmarks)."""
        raw = image_measures(to_unit_range(images))
        h, w = images.shape[-2:]
        if landmarks is None:
            landmarks = images.new_full((images.shape[0], 5, 2), float("nan"))
        raw.update(landmark_measures(landmarks, int(w), int(h)))
        return raw

    def scores(
        self, images: torch.Tensor, landmarks: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """0–100 component scores (B,) per measure."""
        return component_scores(self.measures(images, landmarks), self.sigmoids)

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        return combined_score(self.scores(images, landmarks), self.weights, self.combine)


class HandcraftedRegressor(nn.Module):
    """A logistic (``head=logistic``) or one-hidden-layer MLP (``head=mlp``) regressor from the
    component scores to a 0–100 quality label (``100 × sigmoid(output)``); components without a
    value for a face (no landmarks) enter as 50 (undecided)."""

    loss_name = "mse"
    default_labels = "dataset"

    def __init__(
        self,
        *,
        head: str = "mlp",
        hidden: int = 32,
        sigmoids: Mapping[str, Sequence[Sequence[float]]] | None = None,
    ) -> None:
        super().__init__()
        self.measure = HandcraftedQuality(weights={}, sigmoids=sigmoids)
        self.names = [
            n for n in (*IMAGE_MEASURES, *LANDMARK_MEASURES) if n in self.measure.sigmoids
        ]
        n = len(self.names)
        if head == "logistic":
            self.head: nn.Module = nn.Linear(n, 1)
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        else:
            raise ValueError(f"model.head={head!r}; choose logistic or mlp")

    def features(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Component scores scaled to [0, 1] (B, F), in ``names`` order."""
        with torch.no_grad():
            scores = self.measure.scores(images, landmarks)
        x = torch.stack([scores[n] for n in self.names], 1) / 100.0
        return torch.nan_to_num(x, nan=0.5)

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        return 100.0 * torch.sigmoid(self.head(self.features(images, landmarks)).squeeze(1))


@register_model("fiqa", "handcrafted", trainable=False, higher_is_better=True)
def handcrafted(**kwargs: Any) -> HandcraftedQuality:
    """Metric-only combined hand-crafted quality (see ``HandcraftedQuality``)."""
    return HandcraftedQuality(**kwargs)


@register_model("fiqa", "handcrafted_mlp")
def handcrafted_mlp(**kwargs: Any) -> HandcraftedRegressor:
    """Learnt regressor on the hand-crafted component scores (see ``HandcraftedRegressor``)."""
    return HandcraftedRegressor(**kwargs)
