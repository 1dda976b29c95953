"""Agreement of predicted scores with ground-truth scores (MOS) over a whole dataset: SRCC,
PLCC, KRCC and RMSE, as image-quality and aesthetics benchmarks report them."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import optimize, stats

from visionzoo.core.gathered import GatheredMetric, SampleKey


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG's monotonic 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``
    (VQEG FR-TV Phase II final report, 2003)."""
    return (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4))) + b2


def logistic_plcc(pred: np.ndarray, target: np.ndarray) -> float:
    """PLCC of ``target`` with ``logistic4`` fitted from ``pred`` to ``target`` (least squares),
    which removes the non-linearity between a model's scale and the MOS scale. NaN, with a
    warning, when the fit does not converge."""
    increasing = stats.spearmanr(pred, target).statistic >= 0
    hi, lo = (target.max(), target.min()) if increasing else (target.min(), target.max())
    p0 = [hi, lo, float(np.mean(pred)), float(np.std(pred)) or 1.0]
    try:
        with warnings.catch_warnings():  # the parameter covariance is not needed
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic4, pred, target, p0=p0, maxfev=10_000)
    except RuntimeError as err:
        warnings.warn(
            f"logistic PLCC: the 4-parameter fit failed ({err}); reporting NaN", stacklevel=2
        )
        return float("nan")
    fitted = logistic4(pred, *params)
    if np.ptp(fitted) == 0:
        return float("nan")
    return float(stats.pearsonr(fitted, target).statistic)


def score_correlations(
    pred: np.ndarray, target: np.ndarray, logistic: bool = False
) -> dict[str, float]:
    """``srcc`` (Spearman), ``plcc`` (Pearson), ``krcc`` (Kendall tau-b, which corrects for
    ties) and ``rmse`` of ``pred`` [N] against ``target`` [N]; with ``logistic`` also
    ``plcc_logistic`` (see ``logistic_plcc``). Correlations are NaN when N < 2 or either
    side is constant; ``rmse`` is NaN when N = 0."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    out = {"srcc": float("nan"), "plcc": float("nan"), "krcc": float("nan")}
    out["rmse"] = float(np.sqrt(np.mean((pred - target) ** 2))) if pred.size else float("nan")
    if logistic:
        out["plcc_logistic"] = float("nan")
    if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return out
    out["srcc"] = float(stats.spearmanr(pred, target).statistic)
    out["plcc"] = float(stats.pearsonr(pred, target).statistic)
    out["krcc"] = float(stats.kendalltau(pred, target).statistic)
    if logistic:
        out["plcc_logistic"] = logistic_plcc(pred, target)
    return out


class ScoreCorrelation(GatheredMetric[tuple[float, float]]):
    """SRCC / PLCC / KRCC / RMSE of predicted scores against ground-truth scores, over every
    sample of the dataset on every rank (``GatheredMetric``); ``logistic`` adds
    ``plcc_logistic``, the PLCC after VQEG's 4-parameter logistic fit."""

    def __init__(self, *, logistic: bool = False) -> None:
        super().__init__()
        self.logistic = logistic  # also fit VQEG's logistic (a least-squares fit per compute)

    def update(
        self, keys: list[SampleKey] | torch.Tensor, preds: torch.Tensor, target: torch.Tensor
    ) -> None:
        """Add one batch: ``keys`` [B] dataset indices (or ids), ``preds`` [B] (or [B, 1])
        predicted scores and ``target`` [B] (or [B, 1]) ground-truth scores."""
        pred = preds.detach().reshape(-1).double().cpu().tolist()
        true = target.detach().reshape(-1).double().cpu().tolist()
        keys = keys.tolist() if isinstance(keys, torch.Tensor) else list(keys)
        if not len(keys) == len(pred) == len(true):
            raise ValueError(
                f"{len(keys)} keys, {len(pred)} predictions and {len(true)} targets in one "
                "batch: pass one key and one score each per sample"
            )
        for key, p, t in zip(keys, pred, true, strict=True):
            self._add(key, (p, t))

    def compute(self) -> dict[str, float]:
        """``score_correlations`` over the gathered samples; a collective under DDP."""
        samples = np.asarray(list(self.gathered().values()), dtype=np.float64).reshape(-1, 2)
        return score_correlations(samples[:, 0], samples[:, 1], logistic=self.logistic)
