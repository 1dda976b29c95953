"""The detection warm-up's ``auto`` settings follow the optimiser as Ultralytics does: under the
Adam family the bias rate starts at 0 (Adam's normalised steps make YOLO's 0.1 move BatchNorm
shifts by O(1) within a few steps) and beta1 is not warmed up; under SGD the bias rate starts at
0.1 and momentum at 0.8. Numbers are taken as given."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from visionzoo.detection.module import DetectionModule

ADAMW = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 5e-4}
SGD = {"_target_": "torch.optim.SGD", "lr": 1e-2, "momentum": 0.937, "weight_decay": 5e-4}


def warm_module(optimizer: dict, **kw) -> DetectionModule:
    module = DetectionModule(
        model={"name": "yolov5", "size": "n", "num_classes": 2},
        optimizer=optimizer,
        scheduler={"kind": "linear", "warmup_epochs": 1, "min_lr_ratio": 0.01},
        monitor="val/map",
        task_name="detection",
        nominal_batch_size=16,
        **kw,
    )
    module._trainer = SimpleNamespace(
        world_size=1, datamodule=SimpleNamespace(batch_size=16), max_epochs=10, current_epoch=0
    )
    return module


@pytest.mark.parametrize(
    ("optimizer", "setting", "start"),
    [(ADAMW, "auto", 0.0), (SGD, "auto", 0.1), (ADAMW, 0.05, 0.05), (SGD, 0.0, 0.0)],
)
def test_warmup_bias_lr_follows_the_optimizer(optimizer, setting, start) -> None:
    module = warm_module(optimizer, warmup_bias_lr=setting, warmup_momentum="auto")
    opt = module.configure_optimizers()
    nw = 100
    module._set_lr(opt, 0, nw)
    bias, weights, norms = opt.param_groups
    assert bias["lr"] == pytest.approx(start)
    if optimizer is ADAMW:
        assert all(g["betas"][0] == 0.9 for g in opt.param_groups)
    else:
        assert all(g["momentum"] == pytest.approx(0.8) for g in opt.param_groups)
    assert weights["lr"] == 0.0 and norms["lr"] == 0.0
    module._set_lr(opt, nw // 2, nw)  # halfway: linear from the start value to the target
    assert bias["lr"] == pytest.approx((start + optimizer["lr"]) / 2)
    module._set_lr(opt, nw, nw)  # warm-up over: every group at the scheduled rate
    assert bias["lr"] == pytest.approx(optimizer["lr"]) == weights["lr"]


def test_quadratic_warmup_is_yolox_and_min_lr_epochs_hold_the_floor() -> None:
    """``warmup_shape=quadratic``: YOLOX's ``lr · (i / n)²`` from 0 for every group, momentum
    left alone; ``min_lr_epochs``: the decay reaches ``min_lr_ratio`` that many epochs before
    the end and stays there (YOLOX's no-augmentation epochs)."""
    module = warm_module(SGD, warmup_shape="quadratic", min_lr_epochs=3, warmup_momentum=0.937)
    module.hparams.scheduler = {"kind": "cosine", "warmup_epochs": 1, "min_lr_ratio": 0.05}
    opt = module.configure_optimizers()
    nw = 40
    for ni in (0, 10, 20, 39):
        module._set_lr(opt, ni, nw)
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(SGD["lr"] * (ni / nw) ** 2)
            assert g["momentum"] == pytest.approx(0.937)
    # max_epochs 10, 3 at the floor: cosine over epochs 0..7, epoch 7 onwards at 0.05 × lr
    for epoch, factor in ((0, 1.0), (2, 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 2 / 7)))):
        module._trainer.current_epoch = epoch
        module._set_lr(opt, 1000, nw)
        assert opt.param_groups[1]["lr"] == pytest.approx(SGD["lr"] * factor)
    for epoch in (7, 8, 9):
        module._trainer.current_epoch = epoch
        module._set_lr(opt, 1000, nw)
        assert opt.param_groups[1]["lr"] == pytest.approx(SGD["lr"] * 0.05)


@pytest.mark.parametrize(
    ("key", "value"), [("warmup_shape", "quadratik"), ("min_lr_epochs", -1), ("min_lr_epochs", 1.5)]
)
def test_bad_warmup_options_are_refused_by_name(key, value) -> None:
    with pytest.raises(ValueError, match=f"task.{key}="):
        warm_module(SGD, **{key: value})
