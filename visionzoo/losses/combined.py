"""Composite losses built from registered ones, e.g. cross-entropy + Dice for segmentation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from visionzoo.registry import create_loss, register_loss


def build_loss(spec: str | Mapping[str, Any]) -> nn.Module:
    """Build a registered loss from its name or from ``{"name": <loss>, **kwargs}``."""
    if isinstance(spec, str):
        return create_loss(spec)
    kwargs = dict(spec)
    if "name" not in kwargs:
        raise ValueError(f"loss spec {kwargs!r} has no 'name' key; give a registered loss name")
    return create_loss(kwargs.pop("name"), **kwargs)


@register_loss("weighted_sum")
class WeightedSumLoss(nn.Module):
    """``Σ_i weight_i · loss_i(logits, target)`` over registered losses; returns a scalar.

    Each term is ``{"name": <loss>, "weight": float (default 1.0), **kwargs}``. Constructor
    arguments that clash with ``name``/``weight`` (cross-entropy's class ``weight``) go in a nested
    ``"kwargs": {...}``. After each call ``last_terms`` maps every term's key (its name, suffixed
    ``.<index>`` when a name repeats) to its detached, unweighted value, for logging.
    """

    def __init__(self, terms: list[Mapping[str, Any]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("weighted_sum needs at least one term {'name': ..., 'weight': ...}")
        specs = [dict(t) for t in terms]
        repeats = Counter(s.get("name") for s in specs)
        self.keys: list[str] = []
        self.weights: list[float] = []
        losses = []
        for i, spec in enumerate(specs):
            self.weights.append(float(spec.pop("weight", 1.0)))
            spec.update(spec.pop("kwargs", {}))
            losses.append(build_loss(spec))
            name = str(spec["name"])
            self.keys.append(name if repeats[name] == 1 else f"{name}.{i}")
        self.terms = nn.ModuleList(losses)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = [loss(logits, target) for loss in self.terms]
        self.last_terms = {k: v.detach() for k, v in zip(self.keys, values, strict=True)}
        return sum(w * v for w, v in zip(self.weights, values, strict=True))
