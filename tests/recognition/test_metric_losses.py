"""Metric-learning losses and miners against pytorch-metric-learning 2.9 (values and gradients
w.r.t. the embeddings) and distance-weighted sampling against the analytic weights of Wu et al.
2017, Sec. 4, and pml's ``DistanceWeightedMiner``'s frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from scipy import stats

from visionzoo.recognition.metric_losses import (
    METRIC_LOSSES,
    ContrastiveLoss,
    LiftedStructureLoss,
    TripletMarginLoss,
)
from visionzoo.recognition.miners import (
    distance_weighted_probabilities,
    distance_weighted_triplets,
    pairwise_distances,
)

D = 8  # embedding size of the random batches
SIZES = {"embedding_size": D, "num_classes": 5}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """5 identities, 2-6 images each (uneven, as real batches can be), Gaussian embeddings:
    continuous values, so no two distances tie and every arg-max / arg-min is unambiguous."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0] * 4 + [1] * 3 + [2] * 6 + [3] * 2 + [4] * 5)
    labels = labels[torch.randperm(len(labels), generator=g)]
    return torch.randn(len(labels), D, generator=g, dtype=torch.float64), labels


def _value_and_grad(fn, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = embeddings.clone().requires_grad_(True)
    loss = fn(x)
    loss.backward()
    return loss.detach(), x.grad


def _assert_agrees(ours, reference, embeddings: torch.Tensor) -> None:
    value, grad = _value_and_grad(ours, embeddings)
    ref_value, ref_grad = _value_and_grad(reference, embeddings)
    assert ref_value > 0, "the case must exercise a non-zero loss"
    torch.testing.assert_close(value, ref_value, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_hard_triplet_matches_pml(seed: int, dtype: torch.dtype) -> None:
    embeddings, labels = _batch(seed)
    ours = TripletMarginLoss(**SIZES, margin=0.3, mining="batch_hard")
    ref_loss, ref_miner = pml_losses.TripletMarginLoss(margin=0.3), pml_miners.BatchHardMiner()
    _assert_agrees(
        lambda x: ours(x, labels),
        lambda x: ref_loss(x, labels, ref_miner(x, labels)),
        embeddings.to(dtype),
    )
    # One triplet per anchor: every anchor here has a positive and a negative.
    assert ours.last_terms["mined_triplets"] == len(labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_semi_hard_triplet_matches_pml(seed: int) -> None:
    embeddings, labels = _batch(seed)
    ours = TripletMarginLoss(**SIZES, margin=0.3, mining="semi_hard")
    ref_loss = pml_losses.TripletMarginLoss(margin=0.3)
    ref_miner = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="semihard")
    _assert_agrees(
        lambda x: ours(x, labels),
        lambda x: ref_loss(x, labels, ref_miner(x, labels)),
        embeddings,
    )
    assert ours.last_terms["mined_triplets"] == len(ref_miner(embeddings, labels)[0])


def test_batch_all_triplet_matches_pml() -> None:
    embeddings, labels = _batch(2)
    ours = TripletMarginLoss(**SIZES, margin=0.2, mining="batch_all")
    ref = pml_losses.TripletMarginLoss(margin=0.2)  # no miner: every triplet, mean over > 0
    _assert_agrees(lambda x: ours(x, labels), lambda x: ref(x, labels), embeddings)


def test_unnormalised_triplet_matches_pml_lp_distance() -> None:
    embeddings, labels = _batch(3)
    ours = TripletMarginLoss(**SIZES, margin=1.0, mining="batch_hard", normalize=False)
    raw = pml_distances.LpDistance(normalize_embeddings=False)
    ref_loss = pml_losses.TripletMarginLoss(margin=1.0, distance=raw)
    ref_miner = pml_miners.BatchHardMiner(distance=raw)
    _assert_agrees(
        lambda x: ours(x, labels),
        lambda x: ref_loss(x, labels, ref_miner(x, labels)),
        embeddings,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_matches_pml(seed: int) -> None:
    embeddings, labels = _batch(seed)
    ours = ContrastiveLoss(**SIZES, pos_margin=0.1, neg_margin=1.3)
    ref = pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=1.3)
    _assert_agrees(lambda x: ours(x, labels), lambda x: ref(x, labels), embeddings)


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_with_hard_pairs_matches_pml(seed: int) -> None:
    embeddings, labels = _batch(seed)
    ours = ContrastiveLoss(
        **SIZES,
        pos_margin=0.1,
        neg_margin=1.3,
        mining="hard",
        miner_pos_margin=1.0,
        miner_neg_margin=1.2,
    )
    ref_loss = pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=1.3)
    ref_miner = pml_miners.PairMarginMiner(pos_margin=1.0, neg_margin=1.2)
    _assert_agrees(
        lambda x: ours(x, labels),
        lambda x: ref_loss(x, labels, ref_miner(x, labels)),
        embeddings,
    )
    a1, _, a2, _ = ref_miner(embeddings, labels)
    assert ours.last_terms["active_pos_pairs"] == len(a1)  # the miner's margins discard pairs
    assert ours.last_terms["active_neg_pairs"] == len(a2)


@pytest.mark.parametrize(("seed", "neg_margin", "pos_margin"), [(0, 1.0, 0.0), (1, 0.5, 0.2)])
def test_lifted_structure_matches_pml(seed: int, neg_margin: float, pos_margin: float) -> None:
    embeddings, labels = _batch(seed)
    ours = LiftedStructureLoss(**SIZES, neg_margin=neg_margin, pos_margin=pos_margin)
    ref = pml_losses.LiftedStructureLoss(neg_margin=neg_margin, pos_margin=pos_margin)
    _assert_agrees(lambda x: ours(x, labels), lambda x: ref(x, labels), embeddings)


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("triplet", {"mining": "batch_hard"}),
        ("triplet", {"mining": "batch_all"}),
        ("triplet", {"mining": "semi_hard"}),
        ("triplet", {"mining": "distance_weighted"}),
        ("contrastive", {"mining": "hard"}),
        ("lifted", {}),
    ],
)
def test_easy_batch_gives_a_differentiable_zero(name: str, hyper: dict) -> None:
    """Two tight, far-apart clusters: nothing violates a margin, as pml also finds; the zero
    must still backpropagate (a training step may meet such a batch)."""
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    embeddings = torch.tensor([[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 3) + 1e-3 * torch.eye(6, 2)
    embeddings.requires_grad_(True)
    loss = METRIC_LOSSES[name](embedding_size=2, num_classes=2, **hyper)
    value = loss(embeddings, labels)
    value.backward()
    reference = {
        "triplet": pml_losses.TripletMarginLoss(margin=0.2),
        "contrastive": pml_losses.ContrastiveLoss(pos_margin=0.2, neg_margin=1.0),
        "lifted": pml_losses.LiftedStructureLoss(neg_margin=1.0),
    }[name]
    if name != "lifted":  # lifted is never exactly zero: log Σ exp stays > 0 here
        assert value.item() == 0.0 == reference(embeddings, labels).item()
        assert torch.all(embeddings.grad == 0)
    else:
        torch.testing.assert_close(value, reference(embeddings, labels))


def test_interface_and_bad_options() -> None:
    assert set(METRIC_LOSSES) == {"triplet", "contrastive", "lifted"}
    embeddings, labels = _batch(0)
    for cls in METRIC_LOSSES.values():
        loss = cls(**SIZES)
        assert loss(embeddings, labels).ndim == 0
        assert loss.last_terms and all(not v.requires_grad for v in loss.last_terms.values())
    with pytest.raises(ValueError, match="mining='hardest'"):
        TripletMarginLoss(**SIZES, mining="hardest")
    with pytest.raises(ValueError, match="normalize=True"):
        TripletMarginLoss(**SIZES, mining="distance_weighted", normalize=False)
    with pytest.raises(ValueError, match="labels"):
        ContrastiveLoss(**SIZES)(embeddings, labels[:-1])


# ----------------------------------------------------------------- distance-weighted sampling
DW_DIM, CUTOFF, NONZERO_CUTOFF = 5, 0.5, 1.4


def _analytic_weights(distances: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Wu et al. 2017, Sec. 4: P(n | a) ∝ q(max(d, cutoff))^-1 on the unit sphere of R^n,
    q(d) ∝ d^(n-2) (1 - d²/4)^((n-3)/2); 0 for same-class pairs and d ≥ nonzero_loss_cutoff."""
    d = np.maximum(distances, CUTOFF)
    q = d ** (DW_DIM - 2) * (1 - d**2 / 4) ** ((DW_DIM - 3) / 2)
    w = np.where((labels[:, None] != labels[None]) & (distances < NONZERO_CUTOFF), 1 / q, 0.0)
    return w / w.sum(axis=1, keepdims=True)


def _dw_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """8 points in a cap of the unit sphere of R^5, identities alternating: each anchor has 2-4
    admissible negatives at distinct distances (continuous random values); one pair lies
    below the cutoff and two beyond the loss cutoff."""
    g = torch.Generator().manual_seed(5)
    centre = torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64)
    embeddings = centre + 0.6 * torch.randn(8, DW_DIM, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(embeddings, dim=1), torch.tensor([0, 1] * 4)


def test_distance_weighted_probabilities_match_the_paper() -> None:
    embeddings, labels = _dw_batch()
    distances = pairwise_distances(embeddings)
    expected = _analytic_weights(distances.numpy(), labels.numpy())
    d = distances.numpy()[labels.numpy()[:, None] != labels.numpy()[None]]
    assert (d < CUTOFF).any() and (d >= NONZERO_CUTOFF).any(), "both cutoffs must be exercised"
    ours = distance_weighted_probabilities(
        distances, labels, dim=DW_DIM, cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_CUTOFF
    )
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-9)


COPIES, CALLS, PML_CALLS = 10, 20, 5  # the 8 points tiled: 10 · 39 draws per anchor and call


def _frequencies(triplets: list[tuple[torch.Tensor, ...]], size: int) -> np.ndarray:
    """Counts ``(size, size)`` of (anchor, negative) draws, copies folded onto their point."""
    counts = np.zeros((size, size))
    for a, _, n in triplets:
        np.add.at(counts, (a.numpy() % size, n.numpy() % size), 1)
    return counts


def test_distance_weighted_sampling_frequencies() -> None:
    """Over many draws, how often each negative is drawn for each anchor matches the analytic
    probabilities (chi-square over all anchors, p > 1e-3; max abs. frequency error < 0.03,
    ~5 σ at 7800 draws per anchor), as pml's miner's do (< 0.05 from both, ~4 σ at its 1950
    draws per anchor: pml's sampler is slow).

    Tiling the batch keeps each anchor's distribution over the original points (a copy of a
    negative weighs what it does) while one call gives hundreds of draws per anchor."""
    points, point_labels = _dw_batch()
    expected = _analytic_weights(pairwise_distances(points).numpy(), point_labels.numpy())
    embeddings, labels = points.repeat(COPIES, 1), point_labels.repeat(COPIES)
    distances = pairwise_distances(embeddings)
    g = torch.Generator().manual_seed(0)
    draws = [
        distance_weighted_triplets(distances, labels, dim=DW_DIM, generator=g) for _ in range(CALLS)
    ]
    ours = _frequencies(draws, len(points))
    miner = pml_miners.DistanceWeightedMiner(cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_CUTOFF)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pml = _frequencies([miner(embeddings, labels) for _ in range(PML_CALLS)], len(points))

    assert np.all(ours[expected == 0] == 0), "a zero-weight negative was drawn"
    totals = ours.sum(axis=1, keepdims=True)
    positives_per_anchor = 4 * COPIES - 1
    assert np.all(totals == CALLS * COPIES * positives_per_anchor)  # each positive pair once
    cells = expected > 0
    chi2 = ((ours - totals * expected) ** 2 / np.where(cells, totals * expected, 1))[cells].sum()
    dof = cells.sum() - len(points)
    assert stats.chi2.sf(chi2, dof) > 1e-3
    assert np.abs(ours / totals - expected).max() < 0.03
    pml = pml / pml.sum(axis=1, keepdims=True)
    assert np.abs(pml - expected).max() < 0.05
    assert np.abs(ours / totals - pml).max() < 0.05


def test_distance_weighted_triplet_loss_matches_pml_on_the_same_triplets() -> None:
    embeddings, labels = _dw_batch()
    embeddings = embeddings * 3  # raw embeddings; both normalise them inside
    ours = TripletMarginLoss(
        embedding_size=DW_DIM, num_classes=2, margin=0.4, mining="distance_weighted"
    )
    with torch.random.fork_rng():
        torch.manual_seed(3)
        value = ours(embeddings, labels)
        torch.manual_seed(3)
        triplets = distance_weighted_triplets(pairwise_distances(embeddings), labels, dim=DW_DIM)
    reference = pml_losses.TripletMarginLoss(margin=0.4)(embeddings, labels, triplets)
    assert reference > 0
    torch.testing.assert_close(value, reference)
