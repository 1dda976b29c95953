"""Error-versus-Discard Characteristic (EDC) of a face-quality method, its partial area (pAUC)
and the older error-versus-reject curve that re-tunes the threshold at every step.

Follows ISO/IEC 29794-1:2024 and Schlett et al. 2023, "Considerations on the evaluation of
biometric quality assessment algorithms" (IEEE T-BIOM): a comparison's quality is the minimum
of its two images' qualities; mated comparisons are discarded in ascending pair quality, all
comparisons of one quality value at once (ties), and the FNMR of the remaining ones is plotted
against the discarded fraction. The decision threshold is fixed beforehand on all comparisons,
at a false-match rate or from a starting FNMR. pAUC integrates the step curve up to a discard
limit; the "theoretical best" curve ``max(0, e0 - x)`` (each discard removes one error) can be
subtracted. The re-tuned variant is Grother & Tabassi 2007 ("Performance of biometric quality
measures", IEEE T-PAMI): both mated and non-mated comparisons below a quality cut are removed
and the threshold is set again at the FMR on the non-mated comparisons that remain.

Decisions: a comparison is a match when its similarity is >= the threshold (an FNM when below).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_MODES = ("fmr", "starting_error", "retune")


@dataclass(frozen=True)
class EDCCurve:
    """Points of an EDC step curve: after discarding ``discard[i]`` of the mated comparisons
    the FNMR is ``error[i]`` (until the next point). ``threshold`` is the fixed threshold
    (NaN for the re-tuned curve, whose threshold changes per point)."""

    discard: np.ndarray  # (K,) discarded fraction, ascending, starting at 0
    error: np.ndarray  # (K,) FNMR of the remaining mated comparisons
    threshold: float

    @property
    def starting_error(self) -> float:
        """FNMR before anything is discarded."""
        return float(self.error[0])


def pair_quality(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Quality of comparisons (P,) from the qualities of their two images: the minimum."""
    return np.minimum(np.asarray(q1, np.float64), np.asarray(q2, np.float64))


def threshold_at_fmr(nonmated: np.ndarray, fmr: float) -> float:
    """The similarity threshold whose false-match rate on ``nonmated`` (N,) scores is ``fmr``:
    ``np.quantile(nonmated, 1 - fmr)`` (linear interpolation), as the EDC reference code sets
    it. Raises when there are too few non-mated scores to resolve ``fmr``."""
    nonmated = np.asarray(nonmated, np.float64)
    if not 0 < fmr < 1:
        raise ValueError(f"fmr={fmr}: expected a rate in (0, 1), e.g. 1e-3")
    if nonmated.size * fmr < 1:
        raise ValueError(
            f"FMR {fmr:g} needs at least {int(np.ceil(1 / fmr))} non-mated comparisons, there "
            f"are {nonmated.size}; raise task.edc.fmr or use task.edc.threshold=starting_error"
        )
    return float(np.quantile(nonmated, 1.0 - fmr))


def _step_curve(quality: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(discard fractions, error fractions) of mated comparisons with per-comparison error
    flags, discarded in ascending ``quality``; ties are discarded together."""
    order = np.argsort(quality, kind="stable")
    q, e = quality[order], errors[order].astype(np.int64)
    n = q.size
    remaining_errors = np.cumsum(e[::-1])[::-1]  # errors among comparisons k.. n-1
    starts = np.r_[0, np.flatnonzero(q[1:] != q[:-1]) + 1]  # discard counts at quality steps
    discard = starts / n
    error = remaining_errors[starts] / (n - starts)
    return np.r_[discard, 1.0], np.r_[error, 0.0]


def edc(
    similarity: np.ndarray,
    mated: np.ndarray,
    quality: np.ndarray,
    *,
    mode: str = "fmr",
    fmr: float = 1e-3,
    starting_error: float = 0.05,
) -> EDCCurve:
    """The FNM-EDC of one quality method.

    ``similarity`` (P,) comparison scores, ``mated`` (P,) bools, ``quality`` (P,) pair qualities
    (``pair_quality``). ``mode``: ``fmr`` fixes the threshold at ``fmr`` on all non-mated
    comparisons; ``starting_error`` at ``np.quantile(mated scores, starting_error)`` so the FNMR
    before discarding is about ``starting_error``; ``retune`` re-sets the threshold at ``fmr``
    after each quality cut (``retuned_edc``)."""
    s = np.asarray(similarity, np.float64)
    m = np.asarray(mated, bool)
    q = np.asarray(quality, np.float64)
    if not (s.shape == m.shape == q.shape) or s.ndim != 1:
        raise ValueError(f"similarity {s.shape}, mated {m.shape}, quality {q.shape} must be (P,)")
    if not m.any():
        raise ValueError("EDC needs mated comparisons; the pairs have none")
    if mode == "retune":
        return retuned_edc(s, m, q, fmr=fmr)
    if mode == "fmr":
        threshold = threshold_at_fmr(s[~m], fmr)
    elif mode == "starting_error":
        if not 0 < starting_error < 1:
            raise ValueError(f"starting_error={starting_error}: expected a rate in (0, 1)")
        threshold = float(np.quantile(s[m], starting_error))
    else:
        raise ValueError(f"EDC threshold mode {mode!r}; choose one of {', '.join(THRESHOLD_MODES)}")
    discard, error = _step_curve(q[m], s[m] < threshold)
    return EDCCurve(discard, error, threshold)


def retuned_edc(
    similarity: np.ndarray, mated: np.ndarray, quality: np.ndarray, *, fmr: float = 1e-3
) -> EDCCurve:
    """Error-versus-reject with the threshold re-tuned per step (Grother & Tabassi 2007): for
    each distinct pair quality of the mated comparisons, the comparisons (mated and non-mated)
    of lower quality are removed, the threshold is set at ``fmr`` on the remaining non-mated
    ones, and the FNMR of the remaining mated ones is recorded. The discarded fraction is that
    of the mated comparisons, as for ``edc``. Steps that leave too few non-mated comparisons
    for ``fmr`` end the curve."""
    order = np.argsort(quality[mated], kind="stable")
    mq, ms = quality[mated][order], similarity[mated][order]
    nq, ns = quality[~mated], similarity[~mated]
    n = mq.size
    starts = np.r_[0, np.flatnonzero(mq[1:] != mq[:-1]) + 1]
    discard, error = [], []
    for k in starts:
        cut = mq[k]  # keep comparisons with quality >= cut
        kept_nonmated = ns[nq >= cut]
        if kept_nonmated.size * fmr < 1:
            break
        threshold = np.quantile(kept_nonmated, 1.0 - fmr)
        discard.append(k / n)
        error.append(float(np.mean(ms[k:] < threshold)))
    if not discard:
        raise ValueError(
            f"FMR {fmr:g} cannot be resolved on {ns.size} non-mated comparisons; raise task.edc.fmr"
        )
    return EDCCurve(np.r_[discard, 1.0], np.r_[error, 0.0], float("nan"))


def pauc(curve: EDCCurve, limit: float = 0.2, *, relative: bool = False) -> float:
    """Area under the EDC step curve for discard fractions in [0, ``limit``]; with ``relative``
    minus the area under the theoretical best ``max(0, e0 - x)`` over the same range."""
    if not 0 <= limit <= 1:
        raise ValueError(f"pAUC discard limit {limit}: expected a fraction in [0, 1]")
    x, y = curve.discard, curve.error
    right = np.minimum(np.r_[x[1:], 1.0], limit)
    widths = np.clip(right - x, 0, None)
    area = float(np.sum(y * widths))
    return area - theoretical_best_area(curve.starting_error, limit) if relative else area


def theoretical_best_area(starting_error: float, limit: float) -> float:
    """∫₀^limit max(0, e0 - x) dx: the area under the curve of a quality measure that
    discards exactly the false non-matches first."""
    e0 = float(starting_error)
    cut = min(limit, e0)
    return e0 * cut - cut * cut / 2


def error_at(curve: EDCCurve, fraction: float) -> float:
    """FNMR after discarding ``fraction`` of the mated comparisons (step interpolation: the
    last point at or before ``fraction``)."""
    i = int(np.searchsorted(curve.discard, fraction, side="right")) - 1
    return float(curve.error[max(i, 0)])


def random_edc(
    similarity: np.ndarray,
    mated: np.ndarray,
    *,
    mode: str = "fmr",
    fmr: float = 1e-3,
    starting_error: float = 0.05,
    repeats: int = 20,
    seed: int = 0,
) -> EDCCurve:
    """The EDC of random qualities (no information), averaged pointwise over ``repeats``
    draws on a common grid of discard fractions: the baseline a useful method beats."""
    rng = np.random.default_rng(seed)
    n_mated = int(np.asarray(mated, bool).sum())
    grid = np.arange(n_mated + 1) / n_mated
    total = np.zeros_like(grid)
    threshold = float("nan")
    for _ in range(repeats):
        curve = edc(
            similarity,
            mated,
            rng.random(len(similarity)),
            mode=mode,
            fmr=fmr,
            starting_error=starting_error,
        )
        threshold = curve.threshold
        step = np.searchsorted(curve.discard, grid, side="right") - 1
        total += curve.error[np.maximum(step, 0)]
    return EDCCurve(grid, total / repeats, threshold)
