"""Per-step learning-rate schedules with linear warmup."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    kind: str = "cosine",
    warmup_epochs: float = 1.0,
    warmup_start_factor: float = 0.1,
    min_lr_ratio: float = 0.01,
) -> LambdaLR:
    """Linear warmup from ``warmup_start_factor × lr`` over ``warmup_epochs``, then ``kind``
    (``cosine``, ``linear`` or ``constant``) decay to ``min_lr_ratio × lr`` at ``total_steps``.
    Stepped every optimizer step; its state resumes with the checkpoint."""
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"scheduler.kind {kind!r} is not one of cosine, linear, constant")
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return warmup_start_factor + (1 - warmup_start_factor) * step / warmup
        if kind == "constant":
            return 1.0
        t = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else 1 - t
        return min_lr_ratio + (1 - min_lr_ratio) * shape

    return LambdaLR(optimizer, factor)
