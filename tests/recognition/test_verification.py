"""Verification, ROC, identification and retrieval metrics against scikit-learn, scipy,
pytorch-metric-learning and brute-force loops; the figures are written as PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from visionzoo.recognition.plots import plot_roc, plot_score_histograms
from visionzoo.recognition.verification import (
    FARS,
    flip_fuse,
    identification,
    retrieval,
    roc_metrics,
    verification_accuracy,
)


def pairs(n: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose genuine halves share an identity centre; ``noise`` sets the overlap."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    first = rng.normal(size=(n, dim))
    other = rng.normal(size=(n, dim))
    second = np.where(same[:, None], first, other) + noise * rng.normal(size=(n, dim))
    return first, second, same


def sklearn_verification(e1: np.ndarray, e2: np.ndarray, same: np.ndarray, folds: int) -> dict:
    """insightface's calculate_roc accuracy, written with scikit-learn's KFold and normalize."""
    dist = ((normalize(e1) - normalize(e2)) ** 2).sum(1)
    grid = np.arange(0, 4, 0.01)
    accuracies, chosen = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(dist):
        train_acc = [np.mean((dist[train] < t) == same[train]) for t in grid]
        best = grid[int(np.argmax(train_acc))]
        accuracies.append(np.mean((dist[test] < best) == same[test]))
        chosen.append(best)
    return {"accuracy": np.mean(accuracies), "std": np.std(accuracies), "thr": np.mean(chosen)}


@pytest.mark.parametrize(
    ("n", "noise", "folds"),
    [(600, 1.0, 10), (605, 1.3, 10), (307, 0.1, 5)],  # overlapping, uneven folds, separable
)
def test_verification_accuracy_matches_sklearn_kfold(n: int, noise: float, folds: int) -> None:
    e1, e2, same = pairs(n, 16, noise, seed=n)
    ours = verification_accuracy(e1, e2, same, folds=folds)
    ref = sklearn_verification(e1, e2, same, folds)
    assert ours["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    assert ours["accuracy_std"] == pytest.approx(ref["std"], abs=1e-12)
    assert ours["threshold"] == pytest.approx(ref["thr"], abs=1e-12)
    assert ours["threshold_cosine"] == pytest.approx(1 - ref["thr"] / 2, abs=1e-12)
    assert len(ours["fold_accuracies"]) == folds
    if noise < 0.5:
        assert ours["accuracy"] == 1.0


def test_one_fold_tunes_and_tests_on_all_pairs() -> None:
    e1, e2, same = pairs(300, 8, 1.0, seed=11)
    dist = ((normalize(e1) - normalize(e2)) ** 2).sum(1)
    best = max(np.mean((dist < t) == same) for t in np.arange(0, 4, 0.01))
    assert verification_accuracy(e1, e2, same, folds=1)["accuracy"] == pytest.approx(best)
    with pytest.raises(ValueError, match="folds must be between 1 and the number of pairs"):
        verification_accuracy(e1, e2, same, folds=301)


def test_flip_fused_verification_adds_then_normalises() -> None:
    e1, e2, same = pairs(400, 8, 1.0, seed=3)
    rng = np.random.default_rng(4)
    f1, f2 = e1 + 0.5 * rng.normal(size=e1.shape), e2 + 0.5 * rng.normal(size=e2.shape)
    np.testing.assert_allclose(flip_fuse(e1, f1), normalize(e1 + f1), atol=1e-12)
    ours = verification_accuracy(e1, e2, same, flip_fused=(f1, f2))
    ref = sklearn_verification(normalize(e1 + f1), normalize(e2 + f2), same, 10)
    assert ours["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    torch_result = verification_accuracy(
        torch.from_numpy(e1), torch.from_numpy(e2), torch.from_numpy(same), flip_fused=(f1, f2)
    )
    assert torch_result["accuracy"] == ours["accuracy"]


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_eer_tar_match_sklearn(ties: bool) -> None:
    rng = np.random.default_rng(7)
    same = rng.random(4000) < 0.3
    scores = rng.normal(size=same.size) + 1.5 * same
    if ties:
        scores = np.round(scores, 1)  # many equal scores: one operating point per value
    ours = roc_metrics(scores, same)
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(ours["fpr"], fpr, atol=1e-15)
    np.testing.assert_allclose(ours["tpr"], tpr, atol=1e-15)
    np.testing.assert_array_equal(ours["thresholds"], thresholds)
    assert ours["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    eer = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-12)
    assert ours["eer"] == pytest.approx(eer, abs=1e-9)
    impostors = int((~same).sum())
    for far in FARS:
        if far * impostors >= 1:
            assert ours["tar_at_far"][far] == pytest.approx(tpr[fpr <= far].max(), abs=1e-15)
            accepted = scores >= ours["threshold_at_far"][far]
            assert (accepted & ~same).sum() / impostors <= far
    assert ours["num_genuine"] == int(same.sum()) and ours["num_impostor"] == impostors


def test_far_below_one_impostor_is_unresolved() -> None:
    rng = np.random.default_rng(1)
    same = np.r_[np.ones(300, bool), np.zeros(1000, bool)]
    scores = rng.normal(size=same.size) + same
    out = roc_metrics(scores, same)
    # 1000 impostors resolve FAR down to 1e-3 (one false accept); 1e-4 and below cannot be.
    for far in (1e-1, 1e-2, 1e-3):
        assert out["tar_at_far"][far] is not None and far not in out["unresolved"]
    for far in (1e-4, 1e-5, 1e-6):
        assert out["tar_at_far"][far] is None and out["threshold_at_far"][far] is None
        assert "1000" in out["unresolved"][far]


def test_roc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="impostor"):
        roc_metrics(np.arange(5.0), np.ones(5, bool))


def pml_accuracy(query, query_labels, reference=None, reference_labels=None) -> dict:
    """pytorch-metric-learning's AccuracyCalculator with exact cosine k-NN."""
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
    )

    def tensor(x, dtype=None):
        return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)

    return calc.get_accuracy(
        tensor(query, torch.float32),
        tensor(query_labels),
        tensor(reference, torch.float32),
        tensor(reference_labels),
    )


def clusters(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings around 25 identity centres with 2–7 samples each, plus three lone labels."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.repeat(np.arange(25), rng.integers(2, 8, 25)), [100, 101, 102]]
    centres = rng.normal(size=(103, 12))
    return centres[labels] + 1.1 * rng.normal(size=(labels.size, 12)), labels, centres


def test_retrieval_matches_pytorch_metric_learning() -> None:
    emb, labels, _ = clusters(0)
    ours = retrieval(emb, labels)
    ref = pml_accuracy(emb, labels)
    assert ours["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-9)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-9)
    assert 0 < ours["map_at_r"] < 1


def brute_force_ranks(gallery, gallery_labels, probe, probe_labels) -> list[int]:
    """Rank of each probe's identity: identities ordered by their best cosine, one by one."""
    ranks = []
    for p, truth in zip(probe, probe_labels, strict=True):
        best: dict = {}
        for g, label in zip(gallery, gallery_labels, strict=True):
            cos = float(p @ g / (np.linalg.norm(p) * np.linalg.norm(g)))
            best[label] = max(best.get(label, -2.0), cos)
        ordered = sorted(best, key=best.get, reverse=True)
        ranks.append(ordered.index(truth) + 1)
    return ranks


def test_identification_matches_pml_and_brute_force() -> None:
    emb, labels, centres = clusters(1)
    rng = np.random.default_rng(2)
    probe, probe_labels = emb[:-3], labels[:-3]
    # One enrolment per identity: rank-1 is pml's precision@1 against the gallery.
    gallery_labels = np.arange(25)
    gallery = centres[:25] + 0.8 * rng.normal(size=(25, 12))
    ours = identification(gallery, gallery_labels, probe, probe_labels)
    ref = pml_accuracy(probe, probe_labels, gallery, gallery_labels)
    assert ours["rank1"] == pytest.approx(ref["precision_at_1"], abs=1e-12)
    ranks = np.array(brute_force_ranks(gallery, gallery_labels, probe, probe_labels))
    assert ours["rank5"] == pytest.approx(np.mean(ranks <= 5), abs=1e-12)
    # Several enrolments per identity (string labels): an identity scores its best image.
    gallery2 = np.r_[gallery, centres[:25] + 0.8 * rng.normal(size=(25, 12))]
    names = np.array([f"id{i}" for i in np.r_[gallery_labels, gallery_labels]])
    probe_names = np.array([f"id{i}" for i in probe_labels])
    ours2 = identification(gallery2, names, probe, probe_names, ranks=(1, 3))
    ranks2 = np.array(brute_force_ranks(gallery2, names, probe, probe_names))
    assert ours2 == {"rank1": np.mean(ranks2 <= 1), "rank3": np.mean(ranks2 <= 3)}


def test_identification_rejects_unenrolled_probes() -> None:
    emb, labels, _ = clusters(3)
    with pytest.raises(ValueError, match="missing from the gallery"):
        identification(emb[:5], labels[:5], emb, labels)


def test_plots_write_png_files(tmp_path) -> None:
    rng = np.random.default_rng(5)
    same = rng.random(500) < 0.5
    scores = rng.normal(size=500) + 2 * same
    roc = roc_metrics(scores, same)
    roc_png = plot_roc(roc["fpr"], roc["tpr"], tmp_path / "plots" / "roc.png", "toy")
    hist_png = plot_score_histograms(scores, same, tmp_path / "scores.png", threshold=1.0)
    for png in (roc_png, hist_png):
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100
