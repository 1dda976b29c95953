"""Pseudo-labels and SER-FIQ's score against scipy and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import spatial, special, stats

from visionzoo.fiqa.labels import faceqnet_labels, sddfiqa_raw, wasserstein_1d_equal
from visionzoo.fiqa.models.serfiq import stochastic_quality


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (3, 7)), rng.normal(0.5, 2, (3, 7))
    expected = [stats.wasserstein_distance(x, y) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(wasserstein_1d_equal(a, b), expected)


def test_faceqnet_labels_are_similarity_to_the_most_compliant_image() -> None:
    e = np.array([[1.0, 0], [0.6, 0.8], [0, 1.0], [1.0, 0], [-1.0, 0]])
    ids = np.array([0, 0, 0, 1, 1])
    compliance = np.array([0.1, 0.9, 0.5, 0.7, 0.2])  # references: image 1 and image 3
    labels = faceqnet_labels(e, ids, compliance)
    # cos(e0, e1) = 0.6, cos(e2, e1) = 0.8, reference 100, cos(e4, e3) = −1 → clipped to 0
    np.testing.assert_allclose(labels, [60.0, 100.0, 80.0, 100.0, 0.0])


def test_sddfiqa_distance_is_larger_for_a_typical_image() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16))
    e = np.repeat(centres, 5, axis=0) + rng.normal(0, 0.2, (20, 16))
    e[0] = rng.normal(size=16)  # an image that looks like no one
    ids = np.repeat(np.arange(4), 5)
    raw = sddfiqa_raw(e, ids, repeats=5, seed=0)
    assert raw[0] < np.min(raw[1:5])
    # image 7 by hand: W1 between its intra similarities and the mean over the same draws
    normed = e / np.linalg.norm(e, axis=1, keepdims=True)
    intra = normed[[5, 6, 8, 9]] @ normed[7]
    draws = np.random.default_rng(0)
    for i in range(8):  # replay the generator up to image 7: 5 draws of 4 others per image
        others = np.flatnonzero(ids != ids[i])
        picked = np.stack([draws.choice(others, size=4, replace=False) for _ in range(5)])
    inter = normed[picked] @ normed[7]
    expected = np.mean([stats.wasserstein_distance(intra, row) for row in inter])
    assert raw[7] == pytest.approx(expected)


def test_serfiq_score_matches_pairwise_distances() -> None:
    emb = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(0))
    got = stochastic_quality(emb).numpy()
    for b in range(3):
        x = emb[b].numpy() / np.linalg.norm(emb[b].numpy(), axis=1, keepdims=True)
        expected = 2 * special.expit(-spatial.distance.pdist(x).mean())
        assert got[b] == pytest.approx(expected, rel=1e-5)
    identical = stochastic_quality(torch.ones(1, 4, 3))
    assert identical.item() == pytest.approx(1.0)
