"""Aesthetics metrics against scipy's correlations and hand-counted accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from visionzoo.aesthetics.metrics import AestheticsMetrics, score_moments


def test_score_moments_match_numpy_weighted_mean_and_std() -> None:
    rng = np.random.default_rng(0)
    votes = rng.integers(0, 50, (4, 10)).astype(float)
    mean, std = score_moments(torch.tensor(votes))
    bins = np.arange(1, 11)
    for i, v in enumerate(votes):
        m = np.average(bins, weights=v)
        assert float(mean[i]) == pytest.approx(m)
        assert float(std[i]) == pytest.approx(np.sqrt(np.average((bins - m) ** 2, weights=v)))


def test_metrics_over_batches_match_scipy_and_count_repeats_once() -> None:
    rng = np.random.default_rng(1)
    true_dist = rng.dirichlet(np.ones(10), 12)
    pred_dist = rng.dirichlet(np.ones(10), 12)
    metric = AestheticsMetrics()
    td, pd = torch.tensor(true_dist), torch.tensor(pred_dist)
    pm, _ = score_moments(pd)
    tm, _ = score_moments(td)
    for rows in (range(0, 5), range(5, 12), range(0, 2)):  # the last batch repeats (padding)
        idx = list(rows)
        metric.update(idx, pm[idx], pm[idx] >= 5, tm[idx], pd[idx], td[idx])
    out = metric.compute()
    bins = np.arange(1, 11)
    p_mean, t_mean = pred_dist @ bins, true_dist @ bins
    p_std = np.sqrt(pred_dist @ bins**2 - p_mean**2)
    t_std = np.sqrt(true_dist @ bins**2 - t_mean**2)
    assert out["srcc"] == pytest.approx(stats.spearmanr(p_mean, t_mean).statistic)
    assert out["plcc"] == pytest.approx(stats.pearsonr(p_mean, t_mean).statistic)
    assert out["std_plcc"] == pytest.approx(stats.pearsonr(p_std, t_std).statistic)
    assert out["acc"] == pytest.approx(np.mean((p_mean >= 5) == (t_mean >= 5)))
    cdf_gap = np.cumsum(pred_dist, 1) - np.cumsum(true_dist, 1)
    assert out["emd"] == pytest.approx(np.mean(np.sqrt(np.mean(cdf_gap**2, 1))), rel=1e-5)


def test_binary_metrics_have_no_distribution_terms() -> None:
    metric = AestheticsMetrics()
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    mean = torch.tensor([6.0, 4.0, 4.5, 3.0])
    metric.update([0, 1, 2, 3], logits, logits >= 0, mean)
    out = metric.compute()
    assert set(out) == {"acc", "srcc", "plcc"} and out["acc"] == 0.75
