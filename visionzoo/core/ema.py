"""Exponential moving average of model weights (Polyak averaging with a warm-up ramp)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


class ModelEMA(nn.Module):
    """Keeps ``module``, an averaged copy of a model: after every optimizer step
    ``ema = d·ema + (1 − d)·model`` with ``d = decay·(1 − exp(−updates / tau))``, so early
    updates follow the model closely (the YOLOv5 / timm ModelEmaV2 scheme). Float buffers (BN
    statistics) are averaged too; integer buffers are copied. Being a sub-module, the average
    and its update count are saved in checkpoints and resume exactly."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-int(self.updates) / self.tau))
        src = model.state_dict()
        for name, value in self.module.state_dict().items():
            new = src[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1 - d)
            else:
                value.copy_(new)

    def train(self, mode: bool = True) -> ModelEMA:
        super().train(mode)
        self.module.eval()  # the average is only ever evaluated
        return self
