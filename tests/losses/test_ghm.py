"""GHM-C and GHM-R against bin counts, weights and losses worked out by hand (Li et al., 2019)."""

from __future__ import annotations

import math

import pytest
import torch

from visionzoo import create_loss
from visionzoo.losses.ghm import GHMCLoss, GHMRLoss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bce(x: float, y: float) -> float:
    p = _sigmoid(x)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _asl1(d: float, mu: float = 0.02) -> float:
    return math.sqrt(d * d + mu * mu) - mu


# GHM-C case: g = |sigmoid(x) - y| with 10 bins of width 0.1
LOGITS = [-3.0, -2.5, 2.0, 0.2, 4.0, -4.0]
TARGETS = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
# g = 0.047, 0.076 (bin 0); 0.119 (bin 1); 0.450 (bin 4); 0.982, 0.982 (bin 9)
BINS_C = [0, 0, 1, 4, 9, 9]
# N = 6 elements, counts {0: 2, 1: 1, 4: 1, 9: 2}, n = 4 non-empty bins, β = N / (count · n)
COUNTS_C = [2, 1, 0, 0, 1, 0, 0, 0, 0, 2]
WEIGHTS_C = [6 / 8, 6 / 8, 6 / 4, 6 / 4, 6 / 8, 6 / 8]


def _ghmc_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(TARGETS, dtype=torch.float64)


def test_ghmc_case_is_what_the_comments_say() -> None:
    g = [abs(_sigmoid(x) - y) for x, y in zip(LOGITS, TARGETS, strict=True)]
    assert [int(v * 10) for v in g] == BINS_C


def test_ghmc_counts_weights_and_loss() -> None:
    logits, target = _ghmc_inputs()
    loss = GHMCLoss(reduction="none")
    elementwise = loss(logits, target)
    assert loss.bin_count.tolist() == COUNTS_C
    bce = [_bce(x, y) for x, y in zip(LOGITS, TARGETS, strict=True)]
    expected = [w * c for w, c in zip(WEIGHTS_C, bce, strict=True)]
    torch.testing.assert_close(elementwise, torch.tensor(expected, dtype=torch.float64))

    mean = create_loss("ghm_c", loss_weight=2.0)(logits, target)
    assert mean.item() == pytest.approx(2.0 * sum(expected) / 6, abs=1e-12)
    total = create_loss("ghm_c", reduction="sum")(logits, target)
    assert total.item() == pytest.approx(sum(expected), abs=1e-12)


def test_ghmc_valid_mask_drops_elements_from_counts_and_n() -> None:
    logits, target = _ghmc_inputs()
    valid = torch.tensor([1, 1, 0, 1, 1, 0])  # drop the bin-1 element and one bin-9 element
    loss = GHMCLoss(reduction="none")
    out = loss(logits, target, valid)
    assert loss.bin_count.tolist() == [2, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    # N = 4, n = 3 non-empty bins: β = 4 / (2·3) in bin 0, 4 / (1·3) in bins 4 and 9
    weights = [4 / 6, 4 / 6, 0.0, 4 / 3, 4 / 3, 0.0]
    bce = [_bce(x, y) for x, y in zip(LOGITS, TARGETS, strict=True)]
    expected = [w * c for w, c in zip(weights, bce, strict=True)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    mean = GHMCLoss()(logits, target, valid)
    assert mean.item() == pytest.approx(sum(expected) / 4, abs=1e-12)


def test_ghmc_one_hot_targets_and_gradient() -> None:
    """A (anchors, classes) one-hot layout counts every element; β carries no gradient."""
    logits, target = _ghmc_inputs()
    logits = logits.reshape(3, 2).requires_grad_(True)
    out = GHMCLoss(reduction="none")(logits, target.reshape(3, 2))
    bce = [_bce(x, y) for x, y in zip(LOGITS, TARGETS, strict=True)]
    expected = torch.tensor([w * c for w, c in zip(WEIGHTS_C, bce, strict=True)]).reshape(3, 2)
    torch.testing.assert_close(out, expected.double())
    (grad,) = torch.autograd.grad(out.sum(), logits)
    dbce = [_sigmoid(x) - y for x, y in zip(LOGITS, TARGETS, strict=True)]
    expected_grad = [w * d for w, d in zip(WEIGHTS_C, dbce, strict=True)]
    torch.testing.assert_close(grad.reshape(-1), torch.tensor(expected_grad, dtype=torch.float64))


def test_ghmc_momentum_over_two_calls() -> None:
    logits, target = _ghmc_inputs()
    loss = GHMCLoss(momentum=0.75, reduction="none")
    first = loss(logits, target)
    # the average starts from the first batch's counts, so the first call equals momentum 0
    assert loss.bin_count.tolist() == COUNTS_C
    torch.testing.assert_close(first, GHMCLoss(reduction="none")(logits, target))

    # second batch: g = 0.047 (bin 0), 0.5 (bin 5), 0.018 (bin 0), 0.982 (bin 9)
    logits2 = torch.tensor([-3.0, 0.0, 4.0, -4.0], dtype=torch.float64)
    target2 = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    second = loss(logits2, target2)
    counts2 = [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    ema = [0.75 * a + 0.25 * b for a, b in zip(COUNTS_C, counts2, strict=True)]
    assert ema[:6] == [2.0, 0.75, 0.0, 0.0, 0.75, 0.25] and ema[9] == 1.75
    assert loss.bin_count.tolist() == ema
    # N = 4, n = 3 non-empty bins in this batch: β = 4 / (S_bin · 3)
    weights = [4 / (2.0 * 3), 4 / (0.25 * 3), 4 / (2.0 * 3), 4 / (1.75 * 3)]
    bce = [_bce(x, y) for x, y in zip(logits2.tolist(), target2.tolist(), strict=True)]
    expected = [w * c for w, c in zip(weights, bce, strict=True)]
    torch.testing.assert_close(second, torch.tensor(expected, dtype=torch.float64))


def test_momentum_average_is_frozen_in_eval_mode() -> None:
    logits, target = _ghmc_inputs()
    loss = GHMCLoss(momentum=0.5)
    loss(logits, target)
    loss.eval()
    loss(logits[:2], target[:2])
    assert loss.bin_count.tolist() == COUNTS_C
    assert "bin_count" in loss.state_dict()


# GHM-R case: d = pred - target, g = |d| / sqrt(d² + μ²) with μ = 0.02
DIFFS = [0.0, 0.01, -0.01, 0.05, 1.0, -0.3]
# g = 0 (bin 0); 0.447, 0.447 (bin 4); 0.928, 0.9998, 0.998 (bin 9)
BINS_R = [0, 4, 4, 9, 9, 9]
# N = 6, counts {0: 1, 4: 2, 9: 3}, n = 3: β = 6/3, 6/6, 6/9
WEIGHTS_R = [2.0, 1.0, 1.0, 2 / 3, 2 / 3, 2 / 3]


def test_ghmr_counts_weights_and_loss() -> None:
    g = [abs(d) / math.sqrt(d * d + 0.02**2) for d in DIFFS]
    assert [int(v * 10) for v in g] == BINS_R
    target = torch.linspace(-1, 1, 6, dtype=torch.float64)
    pred = (target + torch.tensor(DIFFS, dtype=torch.float64)).requires_grad_(True)
    loss = GHMRLoss(reduction="none")
    out = loss(pred, target)
    assert loss.bin_count.tolist() == [1, 0, 0, 0, 2, 0, 0, 0, 0, 3]
    expected = [w * _asl1(d) for w, d in zip(WEIGHTS_R, DIFFS, strict=True)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))

    mean = create_loss("ghm_r")(pred.reshape(3, 2), target.reshape(3, 2))
    assert mean.item() == pytest.approx(sum(expected) / 6, abs=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), pred)
    expected_grad = [
        w * d / math.sqrt(d * d + 0.02**2) for w, d in zip(WEIGHTS_R, DIFFS, strict=True)
    ]
    torch.testing.assert_close(grad, torch.tensor(expected_grad, dtype=torch.float64))


def test_ghmr_mu_changes_the_bins() -> None:
    """With μ = 1 the same differences fall in bins 0, 0, 0, 0, 7, 2."""
    target = torch.zeros(6, dtype=torch.float64)
    pred = torch.tensor(DIFFS, dtype=torch.float64)
    loss = GHMRLoss(mu=1.0, reduction="none")
    out = loss(pred, target)
    assert loss.bin_count.tolist() == [4, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    weights = [6 / (4 * 3)] * 4 + [6 / 3, 6 / 3]
    expected = [w * _asl1(d, 1.0) for w, d in zip(weights, DIFFS, strict=True)]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


def test_all_invalid_gives_zero() -> None:
    logits, target = _ghmc_inputs()
    out = GHMCLoss()(logits, target, torch.zeros(6))
    assert out.item() == 0.0
    out = GHMRLoss()(logits, target, torch.zeros(6, dtype=torch.bool))
    assert out.item() == 0.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="momentum"):
        GHMCLoss(momentum=1.0)
    with pytest.raises(ValueError, match="bins"):
        GHMRLoss(bins=0)
    with pytest.raises(ValueError, match="one-hot"):
        GHMCLoss()(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
