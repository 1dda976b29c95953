"""EMD against scipy's Wasserstein distance and the explicit CDF formula; the pairwise rank loss
against torch's MarginRankingLoss on explicitly listed pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from visionzoo.aesthetics.losses import EMDLoss, emd
from visionzoo.losses.ranking import PairwiseRankLoss, pairwise_rank_loss

BINS = np.arange(1, 11)


def random_dists(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.dirichlet(np.ones(10) * 0.7, size=n)


def test_emd_r1_is_scipy_wasserstein_over_the_bins() -> None:
    rng = np.random.default_rng(0)
    p, q = random_dists(rng, 8), random_dists(rng, 8)
    ours = emd(torch.tensor(p), torch.tensor(q), r=1, eps=0.0).numpy()
    ref = [wasserstein_distance(BINS, BINS, a, b) / 10 for a, b in zip(p, q, strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_emd_r2_is_the_explicit_cdf_formula() -> None:
    rng = np.random.default_rng(1)
    p, q = random_dists(rng, 8), random_dists(rng, 8)
    ref = np.sqrt(np.mean((np.cumsum(p, 1) - np.cumsum(q, 1)) ** 2, axis=1))
    ours = emd(torch.tensor(p), torch.tensor(q), r=2, eps=0.0).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_emd_loss_normalises_unequal_vote_totals() -> None:
    """Vote counts of 30 and of 300 voters with the same shares give the same loss."""
    rng = np.random.default_rng(2)
    logits = torch.randn(2, 10, dtype=torch.float64)
    shares = random_dists(rng, 1)[0]
    votes = torch.tensor(np.stack([shares * 30, shares * 300]))
    loss = EMDLoss(r=2)
    per_row = [loss(logits[i : i + 1], votes[i : i + 1]) for i in range(2)]
    p = torch.softmax(logits, 1).numpy()
    ref = np.sqrt(np.mean((np.cumsum(p, 1) - np.cumsum(shares)) ** 2, axis=1))
    for i in range(2):
        assert float(per_row[i]) == pytest.approx(ref[i], rel=1e-6)


def test_emd_has_a_finite_gradient_at_zero_distance() -> None:
    logits = torch.zeros(1, 10, requires_grad=True)
    EMDLoss()(logits, torch.full((1, 10), 0.1)).backward()
    assert torch.isfinite(logits.grad).all()


def test_rank_loss_is_margin_ranking_over_all_ordered_pairs_with_different_targets() -> None:
    torch.manual_seed(0)
    scores = torch.randn(7)
    target = torch.tensor([3.0, 5.0, 5.0, 1.0, 7.5, 3.0, 2.0])  # ties are not pairs
    pairs = [(i, j) for i, j in itertools.permutations(range(7), 2) if target[i] != target[j]]
    i, j = (torch.tensor(v) for v in zip(*pairs, strict=True))
    y = torch.sign(target[i] - target[j])
    ref = F.margin_ranking_loss(scores[i], scores[j], y, margin=0.3)
    assert float(PairwiseRankLoss(margin=0.3)(scores, target)) == pytest.approx(float(ref))


def test_rank_loss_is_zero_with_a_graph_when_all_targets_tie() -> None:
    scores = torch.randn(4, requires_grad=True)
    loss = pairwise_rank_loss(scores, torch.ones(4), margin=1.0)
    loss.backward()
    assert loss.item() == 0.0 and scores.grad is not None
