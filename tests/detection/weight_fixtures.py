"""Deterministic stand-ins for trained weights and inputs, shared by the weight-import tests and
``scripts/make_weight_fixtures.py`` (which ran the reference networks on them once).

Values come from sines of the element index, not from a random generator, so they are the same
on every machine and PyTorch version.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "weights_reference.pt"


def _wave(n: int, phase: float) -> torch.Tensor:
    # float64 keeps small tensors (all the committed references use) exact across machines;
    # float32 for big ones (a ResNet-50's), compared only within one test
    i = torch.arange(n, dtype=torch.float64 if n <= 1 << 17 else torch.float32)
    return torch.sin(i * 12.9898 + phase * 78.233) * torch.cos(i * 4.1414 + phase)


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """Build networks without their random initialisation (``torch.nn.init`` functions return
    the tensor untouched): for weights that are overwritten at once, it saves seconds."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def fake_weights(shapes: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """A state dict of plausible magnitudes for ``(key, shape)`` entries: convolution and linear
    weights ~ U(±1/√fan-in)-like, BatchNorm scales 0.5-1.5, shifts and running means ±0.1,
    running variances 0.5-1.5."""
    out = {}
    for j, (key, shape) in enumerate(shapes):
        n = math.prod(shape)
        w = _wave(n, j + 1)
        if key.endswith("num_batches_tracked"):
            t = torch.zeros(shape, dtype=torch.long)
        elif key.endswith(("running_var",)) or (key.endswith("weight") and len(shape) == 1):
            t = (1.0 + 0.5 * w).float()
        elif len(shape) <= 1:  # biases, BN shifts, running means
            t = (0.1 * w).float()
        else:
            fan_in = math.prod(shape[1:])
            t = (w * math.sqrt(3.0 / fan_in)).float()
        out[key] = t.reshape(shape)
    return out


def fake_images(b: int = 2, h: int = 64, w: int = 96) -> torch.Tensor:
    """``[b, 3, h, w]`` RGB in 0-1."""
    return ((_wave(b * 3 * h * w, 0.5) + 1) / 2).float().reshape(b, 3, h, w)
