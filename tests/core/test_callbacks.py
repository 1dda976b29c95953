"""Throughput logging: each epoch's training and validation images/s reach the CSV log, and
images/s × epoch time is the number of training images the epoch saw."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY_SEG, fit_run


def test_throughput_is_logged_each_epoch(tmp_path: Path) -> None:
    trainer, _ = fit_run([*TINY_SEG, "trainer.max_epochs=2", "logger=csv"], tmp_path)
    with (Path(trainer.log_dir) / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r.get("train/images_per_s")]
    val = [r for r in rows if r.get("val/images_per_s")]
    assert [int(r["epoch"]) for r in train] == [0, 1]
    assert [int(r["epoch"]) for r in val] == [0, 1]
    for r in train:  # 16 training images, 4 batches of 4 (TINY_SEG)
        images = float(r["train/images_per_s"]) * float(r["train/epoch_time_s"])
        assert images == pytest.approx(16, rel=1e-6)
    assert all(float(r["val/images_per_s"]) > 0 for r in val)
