"""The learnt regressors' output scale: centred on the training labels and scaled by their spread,
so labels crowded near 100 (FaceQnet's similarities) start at their level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionzoo.registry import create_model


@pytest.mark.parametrize("name", ["faceqnet", "sddfiqa"])
def test_output_is_centred_and_scaled_by_the_training_labels(name: str) -> None:
    labels = np.array([90.0, 94.0, 98.0, np.nan])
    mean, std = np.nanmean(labels), np.nanstd(labels)  # population std, NaN left out
    net = create_model(name, backbone="resnet18").eval()
    net.set_target_stats(labels)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.fill_(0.0)
        assert net(x).numpy() == pytest.approx([mean, mean], abs=1e-4)
        net.fc.bias.fill_(1.0)
        assert net(x).numpy() == pytest.approx([mean + std, mean + std], abs=1e-4)
    # saved with the weights: a reloaded regressor predicts the same
    other = create_model(name, backbone="resnet18").eval()
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(other(x), net(x))
