"""MagFace quality (Meng et al. 2021, "MagFace: a universal representation for face recognition
and quality assessment"): the magnitude ‖f(x)‖ of the un-normalised embedding of a recogniser
trained with the MagFace loss (``train.py task=recognition model=magface``). Registered as
``magface_quality``: ``magface`` is already the recognition model that trains the recogniser."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from visionzoo.fiqa.recognizer import load_recognizer
from visionzoo.recognition.heads import MagFaceHead
from visionzoo.registry import register_model


class MagFaceQuality(nn.Module):
    """Quality (B,) = embedding magnitude of ``recognizer`` (a ``magface`` checkpoint; any other
    head is refused unless ``any_head``, as its magnitudes carry no trained quality meaning)."""

    def __init__(self, *, recognizer: str, any_head: bool = False) -> None:
        super().__init__()
        loaded = load_recognizer(recognizer, "model.recognizer")
        if loaded.head != "magface" and not any_head:
            raise ValueError(
                f"model.recognizer={recognizer!r} was trained with {loaded.head!r}; MagFace "
                "quality needs `train.py task=recognition model=magface` (or model.any_head=true)"
            )
        self.net, self.fit = loaded.net, loaded.fit

    @torch.no_grad()
    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        self.net.eval()
        return MagFaceHead.magnitudes(self.net(self.fit(images)).float())


@register_model("fiqa", "magface_quality", trainable=False, higher_is_better=True)
def magface_quality(**kwargs: Any) -> MagFaceQuality:
    """Metric-only MagFace magnitude on ``model.recognizer``."""
    return MagFaceQuality(**kwargs)
