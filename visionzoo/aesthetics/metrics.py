"""Aesthetics metrics over a whole evaluation set: high/low accuracy at mean score 5, SRCC /
PLCC of the mean score, EMD of the score distributions and the correlation of predicted and true
standard deviations (the figures NIMA, Talebi & Milanfar 2018, Table 1, reports)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visionzoo.aesthetics.formats import THRESHOLD
from visionzoo.aesthetics.losses import emd
from visionzoo.core.gathered import GatheredMetric, SampleKey
from visionzoo.metrics.correlation import ScoreCorrelation


def score_moments(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of (B, N) distributions over scores 1..N → (B,), (B,)."""
    dist = dist / dist.sum(1, keepdim=True)
    scores = torch.arange(1, dist.shape[1] + 1, dtype=dist.dtype, device=dist.device)
    mean = (dist * scores).sum(1)
    var = (dist * (scores - mean[:, None]) ** 2).sum(1)
    return mean, var.clamp_min(0).sqrt()


class _PerSample(GatheredMetric[tuple[float, float]]):
    """Per sample: whether its high/low call is right, and its EMD (NaN when not predicted)."""

    def update(self, keys: list[SampleKey], correct: torch.Tensor, emd: torch.Tensor) -> None:
        for key, c, e in zip(keys, correct.tolist(), emd.tolist(), strict=True):
            self._add(key, (float(c), float(e)))

    def compute(self) -> dict[str, float]:
        values = np.asarray(list(self.gathered().values()), np.float64).reshape(-1, 2)
        if not len(values):
            return {"acc": float("nan"), "emd": float("nan")}
        return {"acc": float(values[:, 0].mean()), "emd": float(values[:, 1].mean())}


class AestheticsMetrics:
    """Dataset-level aesthetics metrics, exact under DDP (every part is a ``GatheredMetric``
    keyed by dataset index, so padded repeats count once).

    ``update`` takes ``keys`` [B], ``score`` [B] (the model's predicted score: a mean score, or
    a high/low logit for binary models), ``high`` [B] bool predicted high/low, the true ``mean``
    [B], and for distribution models ``pred_dist`` / ``true_dist`` (B, 10). ``compute`` returns
    ``acc``, ``srcc``, ``plcc`` (of ``score`` vs the true mean) and, with distributions,
    ``emd`` (r=2), ``std_srcc`` and ``std_plcc``."""

    def __init__(self) -> None:
        self.mean = ScoreCorrelation()
        self.std = ScoreCorrelation()
        self.per_sample = _PerSample()

    def update(
        self,
        keys: list[SampleKey],
        score: torch.Tensor,
        high: torch.Tensor,
        mean: torch.Tensor,
        pred_dist: torch.Tensor | None = None,
        true_dist: torch.Tensor | None = None,
    ) -> None:
        keys = list(keys)
        self.mean.update(keys, score, mean)
        correct = (high.bool() == (mean >= THRESHOLD)).float()
        distance = torch.full_like(mean, float("nan"))
        if pred_dist is not None and true_dist is not None:
            distance = emd(pred_dist.double(), true_dist.double(), r=2).float()
            self.std.update(keys, score_moments(pred_dist)[1], score_moments(true_dist)[1])
        self.per_sample.update(keys, correct.cpu(), distance.cpu())

    def reset(self) -> None:
        for part in (self.mean, self.std, self.per_sample):
            part.reset()

    def scores(self) -> np.ndarray:
        """(N, 2) predicted score and true mean of every gathered sample (for plots)."""
        return np.asarray(list(self.mean.gathered().values()), np.float64).reshape(-1, 2)

    def compute(self) -> dict[str, Any]:
        """The metrics above; a collective under DDP (every rank must call it)."""
        per_sample = self.per_sample.compute()
        corr = self.mean.compute()
        out = {"acc": per_sample["acc"], "srcc": corr["srcc"], "plcc": corr["plcc"]}
        std = self.std.compute()  # a collective: every rank asks, even without distributions
        if not np.isnan(per_sample["emd"]):
            out.update(emd=per_sample["emd"], std_srcc=std["srcc"], std_plcc=std["plcc"])
        return out
