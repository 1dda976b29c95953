"""Dataset-level metrics (``GatheredMetric``): score correlations against definitional
reference formulas, and a 2-process gloo run that must equal the single-process result."""

from __future__ import annotations

import pickle
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from visionzoo.core.gathered import GatheredMetric
from visionzoo.core.sampler import SeededSampler
from visionzoo.detection.metrics import DetectionEvaluator
from visionzoo.detection.records import DetectionRecord
from visionzoo.metrics.correlation import ScoreCorrelation, logistic4, score_correlations

WORLD = 2
NUM_SAMPLES = 25  # odd, so SeededSampler pads rank 1 with one of rank 0's samples
DET_CLASSES = ["a", "b"]
DET_CAT_IDS = [5, 2]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float(dx @ dy / np.sqrt((dx @ dx) * (dy @ dy)))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    less = (x[None, :] < x[:, None]).sum(1)
    equal = (x[None, :] == x[:, None]).sum(1)
    return 1 + less + (equal - 1) / 2


def _tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b from its definition: (concordant - discordant) over the geometric mean of
    the pair counts untied in x and untied in y."""
    upper = np.triu(np.ones((len(x), len(x)), dtype=bool), k=1)
    sx = np.sign(x[None, :] - x[:, None])[upper]
    sy = np.sign(y[None, :] - y[:, None])[upper]
    return float((sx * sy).sum() / np.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy)))


def _reference(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {
        "srcc": _pearson(_average_ranks(pred), _average_ranks(target)),
        "plcc": _pearson(pred, target),
        "krcc": _tau_b(pred, target),
        "rmse": float(np.sqrt(np.mean((pred - target) ** 2))),
    }


def _scores(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated predictions and MOS, both heavily tied (MOS on a 1-5 grid, predictions to
    one decimal)."""
    g = torch.Generator().manual_seed(seed)
    mos = torch.randint(1, 6, (n,), generator=g).double()
    pred = (0.6 * mos + torch.randn(n, generator=g, dtype=torch.float64)).round(decimals=1)
    return pred, mos


def test_correlations_by_hand() -> None:
    """Pairs of (1,1) (2,3) (2,2) (3,3): 4 concordant, 1 tied in x only, 1 in y only, so
    tau-b = 4 / sqrt(5 * 5); ranks (1, 2.5, 2.5, 4) vs (1, 3.5, 2, 3.5) give SRCC 3.75 / 4.5;
    PLCC = 2 / sqrt(2 * 2.75); the one error of 1 gives RMSE sqrt(1 / 4)."""
    metric = ScoreCorrelation()
    metric.update([3, 1], torch.tensor([3.0, 2.0]), torch.tensor([3.0, 3.0]))
    metric.update(torch.tensor([0, 2]), torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 2.0]))
    out = metric.compute()
    expected = {"srcc": 3.75 / 4.5, "plcc": 2 / np.sqrt(5.5), "krcc": 0.8, "rmse": 0.5}
    assert out == pytest.approx(expected, abs=1e-12)
    metric.reset()
    assert all(np.isnan(v) for v in metric.compute().values())  # no samples
    metric.update([0, 1, 2], torch.ones(3), torch.tensor([1.0, 2.0, 3.0]))
    out = metric.compute()
    assert np.isnan(out["srcc"]) and np.isnan(out["plcc"]) and np.isnan(out["krcc"])
    assert out["rmse"] == pytest.approx(np.sqrt(5 / 3))
    with pytest.raises(ValueError, match="2 keys, 3 predictions"):
        metric.update([0, 1], torch.ones(3), torch.ones(3))


def test_correlations_match_reference_with_ties_in_any_batches() -> None:
    pred, mos = _scores(300, seed=0)
    assert len(torch.unique(pred)) < 100 and len(torch.unique(mos)) == 5
    expected = _reference(pred.numpy(), mos.numpy())
    rng = np.random.default_rng(0)
    order = torch.from_numpy(rng.permutation(300))
    cuts = np.sort(rng.choice(np.arange(1, 300), size=11, replace=False))
    metric = ScoreCorrelation()
    for chunk in np.split(order.numpy(), cuts):
        keys = torch.from_numpy(chunk)
        metric.update(keys, pred[keys], mos[keys])
    metric.update([int(order[0])], torch.tensor([99.0]), torch.tensor([-5.0]))  # a repeat: ignored
    assert list(metric.gathered()) == list(range(300))
    out = metric.compute()
    assert out == pytest.approx(expected, abs=1e-6)
    assert 0.3 < out["krcc"] < out["srcc"] < 0.9  # a real, imperfect correlation


def test_logistic_plcc() -> None:
    """A MOS that is an exact logistic of the prediction is fitted perfectly, rising or falling;
    with noise the least-squares fit is at least as good as the true curve."""
    x = np.random.default_rng(0).uniform(-1, 1, 300)
    mos = logistic4(x, 5.0, 1.0, 0.2, 0.15)
    for sign in (1, -1):
        out = score_correlations(sign * x, mos, logistic=True)
        assert abs(out["plcc"]) < 0.97
        assert out["plcc_logistic"] == pytest.approx(1.0, abs=1e-6)
    noisy = mos + np.random.default_rng(1).normal(0, 0.3, 300)
    out = score_correlations(x, noisy, logistic=True)
    assert out["plcc_logistic"] >= _pearson(mos, noisy) - 1e-6 > out["plcc"]
    assert "plcc_logistic" not in score_correlations(x, noisy)


def test_gathered_keys_must_sort() -> None:
    metric = ScoreCorrelation()
    metric.update([1, "b"], torch.ones(2), torch.ones(2))
    with pytest.raises(TypeError, match=r"\['int', 'str'\] cannot be sorted"):
        metric.gathered()


def test_local_samples_keep_insertion_order() -> None:
    metric: GatheredMetric = ScoreCorrelation()
    metric.update([5, 2, 5], torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    assert metric.local_samples() == {5: (1.0, 0.0), 2: (2.0, 0.0)}
    assert list(metric.gathered()) == [2, 5]


# ------------------------------------------------------------------------------ two processes
def _det_data(n: int) -> tuple[list[DetectionRecord], dict[int, dict[str, torch.Tensor]]]:
    """``n`` images of 1-3 boxes; predictions are the boxes jittered (some relabelled) plus one
    random false positive each, with random scores."""
    rng = np.random.default_rng(0)
    records, preds = [], {}
    for i in range(n):
        xy = rng.uniform(0, 60, (int(rng.integers(1, 4)), 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 40, xy.shape)], axis=1)
        labels = rng.integers(0, 2, len(boxes))
        records.append(DetectionRecord(10 + i, Path(f"{i}.jpg"), 100, 100, boxes, labels))
        dt = np.concatenate([boxes + rng.normal(0, 3, boxes.shape), boxes[:1] + 30])
        dt_labels = np.append(np.where(rng.random(len(boxes)) < 0.8, labels, 1 - labels), 0)
        preds[10 + i] = {
            "boxes": torch.from_numpy(dt).float(),
            "scores": torch.from_numpy(rng.random(len(dt))).float(),
            "labels": torch.from_numpy(dt_labels),
        }
    return records, preds


def _evaluate_all(indices: list[int]) -> dict[str, dict]:
    """Both metrics over the samples ``indices``, fed in batches of 4."""
    pred, mos = _scores(NUM_SAMPLES, seed=1)
    records, det_preds = _det_data(NUM_SAMPLES)
    corr = ScoreCorrelation(logistic=True)
    det = DetectionEvaluator(records, DET_CLASSES, DET_CAT_IDS)
    for start in range(0, len(indices), 4):
        batch = torch.tensor(indices[start : start + 4])
        corr.update(batch, pred[batch], mos[batch])
        ids = [records[i].image_id for i in batch]
        det.update(ids, [det_preds[i] for i in ids])
    return {
        "correlation": corr.compute(),
        "detection": {**det.compute(), "confusion": det.confusion_matrix()},
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        shard = [idx for idx, _ in SeededSampler(NUM_SAMPLES, shuffle=True, seed=3)]
        out = {"shard": shard, **_evaluate_all(shard)}
        (Path(out_dir) / f"rank{rank}.pkl").write_bytes(pickle.dumps(out))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Each rank's results from one gloo run on localhost, each rank holding its
    ``SeededSampler`` shard."""
    out_dir = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(out_dir)), nprocs=WORLD, join=True)
    results = [pickle.loads((out_dir / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]
    shards = [set(r["shard"]) for r in results]
    assert len(shards[0] & shards[1]) == 1 and shards[0] | shards[1] == set(range(NUM_SAMPLES))
    return results


@pytest.fixture(scope="module")
def single_process_results() -> dict[str, dict]:
    return _evaluate_all(list(range(NUM_SAMPLES)))


@pytest.mark.parametrize("metric", ["correlation", "detection"])
def test_two_process_gloo_equals_single_process(
    metric: str, two_process_results: list[dict], single_process_results: dict[str, dict]
) -> None:
    expected = single_process_results[metric]
    for rank in range(WORLD):
        got = two_process_results[rank][metric]
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-12, equal_nan=True)
    if metric == "detection":
        assert expected["map50"] > 0.2  # a meaningful score, not an empty evaluation
