"""Shared pieces of the detection model tests: a two-image toy scene and an overfit loop."""

from __future__ import annotations

import torch
import torch.nn as nn


def blob_batch() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Two 128×128 images: a white square (class 0) and a green disc (class 1)."""
    images = torch.zeros(2, 3, 128, 128)
    images[0, :, 20:60, 30:70] = 1.0
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    images[1, 1][((yy - 80) ** 2 + (xx - 80) ** 2) < 25**2] = 1.0
    targets = [
        {"boxes": torch.tensor([[30.0, 20.0, 70.0, 60.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.tensor([[55.0, 55.0, 105.0, 105.0]]), "labels": torch.tensor([1])},
    ]
    return images, targets


def overfit(
    model: nn.Module,
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    steps: int,
    lr: float,
) -> list[float]:
    """Train ``model`` on one batch with Adam for ``steps`` steps; the loss after each."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        losses = model(images, targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["loss"].detach()))
    return history
