"""The family path end to end, in-process: train.py on a tiny synthetic set, eval.py of
metric-only models without a checkpoint (checked against scikit-image and scipy), and the
scoring behind predict.py (images, reference pairs, videos)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, run_entry
from PIL import Image
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio

from visionzoo.cli import build_datamodule, eval_entry, predict_entry, train_entry
from visionzoo.core.checkpoint import load_checkpoint_module
from visionzoo.core.io import read_rgb
from visionzoo.iqa.classical import brisque
from visionzoo.iqa.module import IQAModule

TINY = [
    "task=iqa",
    "data.synthetic.num_references=5",
    "data.synthetic.size=48",
    "data.crop_size=32",
    "data.batch_size=8",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("iqa_train")
    code, err = run_entry(
        train_entry,
        *TINY,
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks.progress=none",
        f"hydra.run.dir={run}",
    )
    assert code == 0, err[-3000:]
    return run


def test_train_writes_metrics_checkpoint_and_scatter(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())["metrics"]
    for key in ("val/srcc", "val/plcc", "val/krcc", "val/rmse", "val/plcc_logistic"):
        assert np.isfinite(metrics[key]), key
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert list((trained / "plots").glob("val_scatter_epoch*.png"))


def _test_split(run: Path) -> tuple[list, Path]:
    module = load_checkpoint_module(str(run / "checkpoints" / "last.ckpt"))
    datamodule = build_datamodule(module.hparams.data)
    return datamodule.split("test"), datamodule.root


@pytest.mark.parametrize("model", ["psnr", "brisque"])
def test_metric_only_eval_agrees_with_scipy(trained: Path, tmp_path: Path, model: str) -> None:
    code, err = run_entry(
        eval_entry,
        *TINY,
        "data=synthetic_iqa",
        f"model={model}",
        "split=test",
        f"hydra.run.dir={tmp_path}",
    )
    assert code == 0, err[-3000:]
    out = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert out["checkpoint"] is None and out["model"] == model
    records, root = _test_split(trained)
    mos = [r.mos for r in records]
    if model == "psnr":  # scikit-image's PSNR over all RGB values, higher is better
        raw = [
            peak_signal_noise_ratio(read_rgb(root / r.reference), read_rgb(root / r.distorted))
            for r in records
        ]
        aligned = raw
    else:  # lower is better: the reported correlations are of the negated score
        x = (
            torch.stack(
                [torch.from_numpy(read_rgb(root / r.distorted)).permute(2, 0, 1) for r in records]
            ).double()
            / 255
        )
        aligned = [-v for v in brisque(x).tolist()]
    assert out["metrics"]["test/srcc"] == pytest.approx(stats.spearmanr(aligned, mos)[0], abs=1e-6)
    assert out["metrics"]["test/plcc"] == pytest.approx(stats.pearsonr(aligned, mos)[0], abs=1e-5)
    assert out["metrics"]["test/krcc"] == pytest.approx(stats.kendalltau(aligned, mos)[0], abs=1e-6)


def test_predict_scores_pairs_with_a_metric_only_model(trained: Path, tmp_path: Path) -> None:
    records, root = _test_split(trained)
    files = [root / r.distorted for r in records[:3]]
    module = IQAModule(
        model={"name": "psnr"},
        optimizer={"_target_": "torch.optim.SGD"},
        monitor="val/srcc",
        data_meta={},
    )
    datamodule = build_datamodule(
        load_checkpoint_module(str(trained / "checkpoints" / "last.ckpt")).hparams.data
    )
    out = module.predict_files(files, tmp_path, datamodule, references=root / "reference_images")
    for record, r in zip(out, records[:3], strict=True):
        assert Path(record["reference"]).name == Path(r.reference).name  # i01_.. → I01.png
        want = peak_signal_noise_ratio(read_rgb(root / r.reference), read_rgb(root / r.distorted))
        assert record["score"] == pytest.approx(want, rel=1e-5)
    assert (tmp_path / "scores.csv").read_text().count("\n") == 4


@pytest.mark.skipif(
    not (SHARED_DATA / "iqa_calibration").is_dir(), reason="needs ../shared/data/iqa_calibration"
)
def test_predict_cli_scores_pairs_without_a_checkpoint(tmp_path: Path) -> None:
    """``predict.py task=iqa model=psnr input=<folder> reference=<folder>`` pairs files by name
    and writes the official MATLAB PSNR of the five TID2013 calibration pairs (to 0.01 dB)."""
    calib = SHARED_DATA / "iqa_calibration"
    with open(calib / "results_official.csv", newline="") as f:
        official = {r["Method"]: r for r in csv.DictReader(f)}["psnr"]
    code, err = run_entry(
        predict_entry,
        "task=iqa",
        "model=psnr",
        f"input={calib / 'dist_dir'}",
        f"reference={calib / 'ref_dir'}",
        f"output={tmp_path}",
    )
    assert code == 0, err
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["reference"]).name for r in rows] == [Path(r["file"]).name for r in rows]
    assert len(rows) == 5
    for row in rows:
        assert float(row["score"]) == pytest.approx(
            float(official[Path(row["file"]).name]), abs=0.01
        )


def test_predict_cli_refuses_reference_for_a_family_without_it(tmp_path: Path) -> None:
    code, err = run_entry(
        predict_entry,
        "task=recognition",
        "model=raw_pixels",  # metric-only, so it gets as far as the option
        f"input={tmp_path}",
        f"reference={tmp_path}",
        f"output={tmp_path / 'out'}",
    )
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert "reference=" in err and "task=iqa" in err and "recognition" in err, err[-2000:]


def test_predict_scores_a_video_as_the_mean_of_its_frames(trained: Path, tmp_path: Path) -> None:
    module = load_checkpoint_module(str(trained / "checkpoints" / "last.ckpt"))
    datamodule = build_datamodule(module.hparams.data)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    capture, decoded = cv2.VideoCapture(str(path)), []
    while (got := capture.read())[0]:
        decoded.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    (record,) = module.predict_files([path], tmp_path, datamodule)
    assert record["frames"] == len(decoded) == 3
    with torch.no_grad():
        each = [
            float(module.to_label_units(module.raw(datamodule.to_tensor(f)[None]))[0])
            for f in decoded
        ]
    assert record["score"] == pytest.approx(np.mean(each), rel=1e-5)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(decoded):
        Image.fromarray(f).save(folder / f"{i}.png")
    (as_frames,) = module.predict_files(sorted(folder.iterdir()), tmp_path, datamodule, video=True)
    assert as_frames["frames"] == 3 and as_frames["score"] == pytest.approx(record["score"])
