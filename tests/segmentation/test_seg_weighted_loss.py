"""loss=weighted_cross_entropy with median-frequency weights from the command line: computed
from the training masks, used by the loss and stored in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SEG, fit_run
from PIL import Image

from visionzoo.cli import load_checkpoint_module


def median_frequency(masks: list[np.ndarray], num_classes: int) -> list[float]:
    """Eigen & Fergus (2015), sec. 4.2, written out: freq(c) = pixels of c / pixels of the
    images containing c; weight = median(freq) / freq(c)."""
    pixels = np.zeros(num_classes)
    exposure = np.zeros(num_classes)
    for m in masks:
        counts = np.bincount(m.ravel(), minlength=num_classes)
        pixels += counts
        exposure += (counts > 0) * m.size
    freq = pixels / exposure
    return list(np.median(freq) / freq)


def test_median_frequency_weights_from_the_training_masks(tmp_path: Path) -> None:
    overrides = [*TINY_SEG, "loss=weighted_cross_entropy", "trainer.max_epochs=1", "logger=none"]
    trainer, module = fit_run(overrides, tmp_path)
    datamodule = trainer.datamodule
    masks = [np.asarray(Image.open(p)) for p in datamodule.mask_paths("train")]
    expected = median_frequency(masks, 4)
    assert torch.allclose(module.loss_fn.weight.double(), torch.tensor(expected), rtol=1e-6)
    reloaded = load_checkpoint_module(str(tmp_path / "checkpoints" / "last.ckpt"))
    assert reloaded.hparams.loss["weight"] == pytest.approx(module.loss_fn.weight.tolist())
    assert torch.equal(reloaded.loss_fn.weight, module.loss_fn.weight)
