"""MetaIQA's first-order MAML step against the closed form for a linear model, the episode
sampler's layout, and the CenseoQoE inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from visionzoo.iqa.data import EpisodeBatchSampler
from visionzoo.iqa.module import IQAModule
from visionzoo.registry import create_model, model_info


class Linear(nn.Module):
    """score = w · (per-channel means) + b: the MSE gradient has a closed form."""

    needs_reference = False
    higher_is_better = True
    meta_learning = True

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(image.mean(dim=(2, 3))).squeeze(1)


def _grad(w: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """∇_w mean((X w − t)²) = 2/n Xᵀ(X w − t), X with a column of ones for the bias."""
    return 2.0 / len(t) * x.T @ (x @ w - t)


def test_first_order_maml_gradient_matches_the_closed_form() -> None:
    support, query, inner_lr, steps = 3, 2, 0.1, 2
    module = IQAModule(
        model={"name": "metaiqa"},
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.1},
        monitor="val/srcc",
        meta={
            "epochs": 1,
            "inner_lr": inner_lr,
            "inner_steps": steps,
            "support": support,
            "query": query,
        },
        data_meta={"mos_mean": 0.0, "mos_std": 1.0},
    )
    module.model = Linear()
    module.loss_weights = {"mse": 1.0}
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2 * (support + query), 3, 4, 4, generator=g)
    target = torch.randn(len(image), generator=g)
    surrogate, _ = module.meta_step(image, None, target)
    surrogate.backward()

    x = np.c_[image.mean(dim=(2, 3)).double().numpy(), np.ones(len(image))]
    t = target.double().numpy()
    w0 = np.r_[
        module.model.fc.weight.detach().double().numpy()[0],
        module.model.fc.bias.detach().double().numpy(),
    ]
    expected = np.zeros(4)
    for k in range(2):
        s = slice(k * 5, k * 5 + support)
        q = slice(k * 5 + support, (k + 1) * 5)
        w = w0.copy()
        for _ in range(steps):
            w = w - inner_lr * _grad(w, x[s], t[s])
        expected += _grad(w, x[q], t[q]) / 2
    got = np.r_[
        module.model.fc.weight.grad.double().numpy()[0], module.model.fc.bias.grad.double().numpy()
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_episode_batches_are_blocks_of_one_distortion_type() -> None:
    kinds = {"01": list(range(0, 10)), "02": list(range(10, 20)), "03": [20, 21]}
    sampler = EpisodeBatchSampler(
        kinds, num_samples=22, batch_size=8, meta_epochs=1, support=2, query=2, tasks=2, seed=0
    )
    of = {i: k for k, v in kinds.items() for i in v}
    batches = list(sampler)
    assert len(batches) == len(sampler) == 22 // 8
    for batch in batches:
        assert len(batch) == 8
        for block in (batch[:4], batch[4:]):
            indices = [i for i, _ in block]
            assert len({of[i] for i in indices}) == 1 and len(set(indices)) == 4
    sampler.set_epoch(1)  # the fine-tuning epochs are plain batches, as many
    plain = list(sampler)
    assert len(plain) == 2 and all(len(b) == 8 for b in plain)
    sampler.set_epoch(0)
    assert list(sampler) == batches  # a function of (seed, epoch): exact resume


def test_censeo_fr_stacks_the_difference_image() -> None:
    model = create_model("censeo", mode="fr")
    assert model.net.trunk.feature_info[0]["num_chs"] > 0
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 6
    x = torch.rand(2, 3, 32, 32)
    assert model(x, x).shape == (2,)
    with pytest.raises(ValueError, match="needs reference"):
        model(x)


@pytest.mark.parametrize(
    ("name", "higher"),
    # directions as IQA-PyTorch's lower_better flags (../shared/data/README.md)
    [
        ("psnr", True),
        ("ssim", True),
        ("ms_ssim", True),
        ("vsi", True),
        ("niqe", False),
        ("brisque", False),
    ],
)
def test_classical_models_are_metric_only_with_their_direction(name: str, higher: bool) -> None:
    info = model_info(name)
    assert not info.trainable and info.higher_is_better is higher
    assert model_info("censeo").trainable and model_info("metaiqa").trainable
