"""SER-FIQ (Terhörst et al. 2020, "SER-FIQ: unsupervised estimation of face image quality based
on stochastic embedding robustness"), on a recognition checkpoint whose embedding neck has
dropout: the trunk runs once, the neck (dropout → FC → BN) runs T times with dropout active,
and quality = 2·sigmoid(−mean pairwise Euclidean distance of the T normalised embeddings)
(paper eq. 1–2)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.fiqa.recognizer import load_recognizer
from visionzoo.registry import register_model

MAX_ROWS = 8192  # stochastic neck passes evaluated at once (bounds memory)


class SERFIQ(nn.Module):
    """Quality (B,) in (0, 1] from ``passes`` stochastic embeddings per face.

    ``recognizer``: a recognition checkpoint whose backbone has ``dropout`` → ``fc`` →
    ``features`` (timm and IResNet backbones); ``dropout``: the rate used in the passes (null =
    the checkpoint's own; SER-FIQ needs one > 0); ``seed`` fixes the dropout masks."""

    def __init__(
        self, *, recognizer: str, passes: int = 100, dropout: float | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        loaded = load_recognizer(recognizer, "model.recognizer")
        net = loaded.net
        if not all(hasattr(net, k) for k in ("dropout", "fc", "features")):
            raise ValueError(
                f"model.recognizer={recognizer!r}: its {type(net).__name__} backbone has no "
                "dropout → fc → features neck (MobileFaceNet); SER-FIQ needs a timm or IResNet one"
            )
        self.p = float(net.dropout.p if dropout is None else dropout)
        if not 0 < self.p < 1:
            raise ValueError(
                f"SER-FIQ needs dropout in (0, 1); the recognizer's is {net.dropout.p}: train it "
                "with model.dropout=0.2 or set model.dropout here"
            )
        if passes < 2:
            raise ValueError(f"model.passes={passes}: SER-FIQ needs at least 2 passes")
        self.net, self.fit = net, loaded.fit
        self.passes, self.seed = passes, seed

    @torch.no_grad()
    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        self.net.eval()
        captured: list[torch.Tensor] = []
        hook = self.net.dropout.register_forward_hook(lambda m, i, o: captured.append(i[0]))
        try:
            self.net(self.fit(images))
        finally:
            hook.remove()
        x = captured[0].flatten(1)
        rows = x.repeat_interleave(self.passes, dim=0)  # (B·T, F)
        g = torch.Generator(device=x.device).manual_seed(self.seed)
        out = []
        for chunk in rows.split(MAX_ROWS):
            keep = torch.rand(chunk.shape, generator=g, device=x.device) >= self.p
            dropped = chunk * keep / (1 - self.p)
            out.append(self.net.features(self.net.fc(dropped)))
        return stochastic_quality(torch.cat(out).float().view(x.shape[0], self.passes, -1))


def stochastic_quality(embeddings: torch.Tensor) -> torch.Tensor:
    """SER-FIQ quality (B,) of T stochastic embeddings per face (B, T, D): the embeddings are
    L2-normalised and ``q = 2·sigmoid(−mean over pairs i < j of ‖x_i − x_j‖)``."""
    emb = F.normalize(embeddings.float(), dim=2)
    t = emb.shape[1]
    mean_distance = torch.cdist(emb, emb).sum((1, 2)) / (t * (t - 1))  # each pair counted twice
    return 2 * torch.sigmoid(-mean_distance)


@register_model("fiqa", "serfiq", trainable=False, higher_is_better=True)
def serfiq(**kwargs: Any) -> SERFIQ:
    """Metric-only SER-FIQ on ``model.recognizer`` (a recognition checkpoint with dropout)."""
    return SERFIQ(**kwargs)
