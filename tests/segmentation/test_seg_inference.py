"""Sliding-window and flip-TTA inference checked with pointwise models, where both must equal
the whole-image prediction exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visionzoo.segmentation.inference import predict_logits, resize_logits, sliding_window

C = 3


def _pointwise() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(4, C, 1).eval()


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 4, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("size", "crop", "stride"),
    [
        ((23, 31), (8, 10), (5, 7)),  # neither size is a multiple of crop or stride
        ((17, 40), (16, 16), (16, 16)),  # stride = crop, last window flush with the border
        ((9, 13), (8, 16), (4, 4)),  # width smaller than the crop
        ((5, 7), (8, 8), (4, 4)),  # image smaller than the crop in both directions
    ],
)
@torch.no_grad()
def test_sliding_window_equals_whole_for_pointwise_model(size, crop, stride) -> None:
    model = _pointwise()
    image = _image(*size)
    out = sliding_window(model, image, crop=crop, stride=stride, num_classes=C)
    assert out.shape == (2, C, *size)
    torch.testing.assert_close(out, model(image), atol=1e-6, rtol=0)


@torch.no_grad()
def test_sliding_window_averages_overlaps() -> None:
    """A model returning a per-window constant: each pixel gets the mean over covering windows."""
    calls: list[tuple[int, int]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape[-2:]))
        return torch.full((x.shape[0], 1, *x.shape[-2:]), float(len(calls)))

    out = sliding_window(model, torch.zeros(1, 1, 1, 10), crop=(1, 4), stride=(1, 3), num_classes=1)
    # windows start at 0, 3, 6 (flush): [0..3]=1, [3..6]=2, [6..9]=3
    expected = torch.tensor([1, 1, 1, 1.5, 2, 2, 2.5, 3, 3, 3]).view(1, 1, 1, 10)
    assert calls == [(1, 4)] * 3
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("mode", ["whole", "slide"])
@torch.no_grad()
def test_flip_tta_equals_whole_for_pointwise_model(mode: str) -> None:
    model = _pointwise()
    image = _image(11, 19, seed=1)
    out = predict_logits(
        model, image, num_classes=C, mode=mode, crop=(8, 8), stride=(5, 6), flip=True
    )
    torch.testing.assert_close(out, model(image), atol=1e-6, rtol=0)


@torch.no_grad()
def test_flip_tta_averages_with_mirrored_prediction() -> None:
    """With a position-dependent model, flip TTA is the mean of f(x) and flip(f(flip(x)))."""

    def model(x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x[:, :1])
        return torch.cat([x[:, :1] * ramp, x[:, 1:2]], dim=1)

    image = _image(3, 5, seed=2)[:, :2]
    ref = 0.5 * (model(image) + model(image.flip(-1)).flip(-1))
    out = predict_logits(model, image, num_classes=2, flip=True)
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(out, model(image))


def test_bad_mode_raises() -> None:
    with pytest.raises(ValueError, match="bad"):
        predict_logits(_pointwise(), _image(4, 4), num_classes=C, mode="bad")


def test_resize_logits_matches_interpolate() -> None:
    logits = _image(5, 6)
    ref = F.interpolate(logits, size=(9, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resize_logits(logits, [9, 4]), ref)


@pytest.mark.parametrize("stride", [(8, 4), (4, 0)])
def test_stride_outside_crop_raises(stride) -> None:
    """A stride above the crop would leave uncovered pixels with NaN logits."""
    with pytest.raises(ValueError, match="stride"):
        sliding_window(_pointwise(), _image(20, 20), crop=(4, 4), stride=stride, num_classes=C)
