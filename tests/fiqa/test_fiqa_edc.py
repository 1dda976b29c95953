"""EDC / pAUC against values computed by hand (the conventions of the EDC reference code of
Schlett et al. 2023: FNM iff score < threshold, ties discarded together, step interpolation,
theoretical best = triangle of the starting error)."""

from __future__ import annotations

import numpy as np
import pytest

from visionzoo.fiqa.edc import edc, error_at, pair_quality, pauc, random_edc, retuned_edc

# Five mated comparisons: (similarity, pair quality).
MATED_SIM = np.array([0.1, 0.9, 0.4, 0.8, 0.2])
MATED_Q = np.array([1.0, 5.0, 2.0, 4.0, 3.0])
# Non-mated: np.quantile([0, .1, .2, .3, .5], 0.75) = 0.3 is the threshold at FMR 0.25.
NONMATED_SIM = np.array([0.5, 0.3, 0.2, 0.1, 0.0])


def _inputs(nonmated_q: np.ndarray | None = None):
    sim = np.r_[MATED_SIM, NONMATED_SIM]
    mated = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    nq = np.full(5, 10.0) if nonmated_q is None else nonmated_q
    return sim, mated, np.r_[MATED_Q, nq]


def test_pair_quality_is_the_minimum() -> None:
    assert pair_quality(np.array([3, 1, 5]), np.array([2, 4, 5])).tolist() == [2, 1, 5]


def test_fixed_threshold_at_fmr() -> None:
    # threshold 0.3: FNMs are the comparisons with scores 0.1 (q 1) and 0.2 (q 3).
    curve = edc(*_inputs(), mode="fmr", fmr=0.25)
    assert curve.threshold == pytest.approx(0.3)
    # discard 0: 2/5; q1 gone: 1/4; q2 gone: 1/3; q3 gone: 0/2; q4 gone: 0/1; end point.
    np.testing.assert_allclose(curve.discard, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve.error, [0.4, 0.25, 1 / 3, 0, 0, 0])
    # 0.4·0.2 + 0.25·0.2 + (1/3)·0.1
    assert pauc(curve, 0.5) == pytest.approx(0.08 + 0.05 + 0.1 / 3)
    # minus the theoretical best ∫₀^0.4 (0.4 − x) dx = 0.08
    assert pauc(curve, 0.5, relative=True) == pytest.approx(0.05 + 0.1 / 3)
    # limit below the starting error: best = 0.4·0.2 − 0.2²/2 = 0.06
    assert pauc(curve, 0.2, relative=True) == pytest.approx(0.08 - 0.06)
    assert error_at(curve, 0.2) == pytest.approx(0.25)
    assert error_at(curve, 0.3) == pytest.approx(0.25)


def test_tied_qualities_are_discarded_together() -> None:
    sim, mated, _ = _inputs()
    # qualities 1, 1, 2, 2, 3 with FNMs (< 0.3) at the first (q 1) and the fifth (q 3)
    q = np.r_[[1.0, 1.0, 2.0, 2.0, 3.0], np.full(5, 10.0)]
    sim = np.r_[[0.1, 0.9, 0.4, 0.8, 0.2], NONMATED_SIM]
    curve = edc(sim, mated, q, mode="fmr", fmr=0.25)
    np.testing.assert_allclose(curve.discard, [0, 0.4, 0.8, 1.0])
    # both q 1 gone: [.4, .8, .2] → 1/3; both q 2 gone: [.2] → 1/1
    np.testing.assert_allclose(curve.error, [0.4, 1 / 3, 1.0, 0])
    assert pauc(curve, 0.2) == pytest.approx(0.08)
    assert pauc(curve, 0.6) == pytest.approx(0.4 * 0.4 + 0.2 / 3)
    assert pauc(curve, 0.9) == pytest.approx(0.4 * 0.4 + 0.4 / 3 + 0.1)


def test_threshold_from_a_starting_error() -> None:
    # np.quantile([.1, .2, .4, .8, .9], 0.25) = 0.2: only the 0.1 comparison is an FNM.
    curve = edc(*_inputs(), mode="starting_error", starting_error=0.25)
    assert curve.threshold == pytest.approx(0.2)
    np.testing.assert_allclose(curve.error, [0.2, 0, 0, 0, 0, 0])
    assert pauc(curve, 0.2) == pytest.approx(0.04)
    assert pauc(curve, 0.2, relative=True) == pytest.approx(0.04 - (0.04 - 0.02))


def test_retuned_threshold() -> None:
    # Non-mated qualities 1..5: each cut also removes non-mated comparisons.
    sim, mated, q = _inputs(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    curve = retuned_edc(sim, mated, q, fmr=0.25)
    # cut 1: threshold 0.3 on all → 2/5. cut 2: non-mated [0, .1, .2, .3] → quantile .75 =
    # 0.225; mated [.4, .2, .8, .9] → 1/4. cut 3: 3 non-mated cannot resolve FMR 0.25 → end.
    np.testing.assert_allclose(curve.discard, [0, 0.2, 1.0])
    np.testing.assert_allclose(curve.error, [0.4, 0.25, 0])
    assert np.allclose(edc(sim, mated, q, mode="retune", fmr=0.25).error, curve.error)


def test_too_few_nonmated_for_the_fmr_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least 1000 non-mated"):
        edc(*_inputs(), mode="fmr", fmr=1e-3)


def test_random_qualities_keep_the_starting_error() -> None:
    rng = np.random.default_rng(0)
    sim = np.r_[rng.normal(0.6, 0.2, 400), rng.normal(0.0, 0.2, 2000)]
    mated = np.r_[np.ones(400, bool), np.zeros(2000, bool)]
    curve = random_edc(sim, mated, fmr=0.01, repeats=30)
    e0 = curve.starting_error
    assert curve.discard[0] == 0 and curve.error[0] == pytest.approx(e0)
    # discarding at random leaves the expected FNMR unchanged: area ≈ e0 × limit
    assert pauc(curve, 0.2) == pytest.approx(e0 * 0.2, rel=0.1)
