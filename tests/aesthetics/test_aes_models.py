"""DMA aggregation against numpy, and the output shapes of every model and objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionzoo.aesthetics.models.dma import aggregate
from visionzoo.registry import create_model


def test_stats_aggregation_is_min_max_mean_median_over_patches() -> None:
    features = torch.randn(3, 5, 4, dtype=torch.float64)  # odd K: one median
    x = features.numpy()
    ref = np.concatenate([x.min(1), x.max(1), x.mean(1), np.median(x, 1)], axis=1)
    np.testing.assert_allclose(aggregate(features, "stats").numpy(), ref)


def test_sort_aggregation_sorts_each_dimension_and_ignores_patch_order() -> None:
    features = torch.randn(2, 4, 3)
    out = aggregate(features, "sort")
    np.testing.assert_allclose(out.numpy(), np.sort(features.numpy(), axis=1).reshape(2, -1))
    shuffled = features[:, torch.randperm(4)]
    assert torch.equal(aggregate(shuffled, "sort"), out)
    assert torch.equal(aggregate(shuffled, "stats"), aggregate(features, "stats"))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("nima", {}),
        ("nima", {"backbone": "lcnet_050"}),  # pooled width (1280) ≠ num_features (256)
        ("nima", {"objective": "regression"}),
        ("rapid", {"columns": 1}),
        ("rapid", {"columns": 2, "objective": "distribution"}),
        ("dma", {"aggregation": "stats"}),
        ("dma", {"aggregation": "sort", "objective": "regression"}),
    ],
)
def test_output_shape_follows_the_objective(name: str, kwargs: dict) -> None:
    model = create_model(name, **kwargs).eval()
    out = model(torch.randn(2, 3, 32, 32), torch.randn(2, 4, 3, 24, 24))
    assert out.shape == ((2, 10) if model.objective == "distribution" else (2,))


def test_dma_sort_refuses_a_patch_count_it_was_not_built_for() -> None:
    model = create_model("dma", aggregation="sort", num_patches=4)
    with pytest.raises(ValueError, match="data.num_crops=4"):
        model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 3, 24, 24))
