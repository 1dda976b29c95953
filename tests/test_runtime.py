"""The GPU-path options, checked on CPU: ``model.compile`` trains like eager, channels-last
weights and inputs train like contiguous ones, bf16 autocast runs, and ``pin_memory: auto``
follows the trainer's device."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY_DET, TINY_SEG, compose

from visionzoo.cli import build_run
from visionzoo.core.io import DataError
from visionzoo.segmentation.data import SegmentationDataModule
from visionzoo.segmentation.module import SegmentationModule

# three training steps, no validation, nothing written but the run folder
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=0",
    "logger=none",
    "callbacks.checkpoint.save_top_k=0",
    "callbacks.checkpoint.save_last=false",
]
SMALL_UNET = ["model.base_channels=4", "model.depth=2"]


class StepLosses(pl.Callback):
    """The loss of every training step, and the layout of every batch's images."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.channels_last: list[bool] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.channels_last.append(
            batch["image"].is_contiguous(memory_format=torch.channels_last)
            and not batch["image"].is_contiguous()
        )

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def short_fit(overrides: list[str], run_dir: Path) -> tuple[StepLosses, pl.LightningModule]:
    pl.seed_everything(0, workers=True, verbose=False)
    cfg = compose([*overrides, *SHORT], run_dir)
    trainer, module, datamodule = build_run(cfg, run_dir)
    record = StepLosses()
    trainer.callbacks.append(record)
    trainer.fit(module, datamodule=datamodule)
    return record, module


def _state(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def _assert_same_training(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    (rec_a, mod_a), (rec_b, mod_b) = a, b
    assert len(rec_a.losses) == len(rec_b.losses) == 3
    torch.testing.assert_close(rec_a.losses, rec_b.losses, rtol=rtol, atol=atol)
    sa, sb = _state(mod_a), _state(mod_b)
    assert sa.keys() == sb.keys()  # compile / channels-last leave checkpoint keys alone
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=rtol, atol=atol, msg=k)


def test_compile_trains_like_eager(tmp_path: Path) -> None:
    """``model.compile=true`` (inductor on CPU here) gives eager's losses and weights over
    three optimizer steps."""
    base = [*TINY_SEG, *SMALL_UNET]
    eager = short_fit(base, tmp_path / "eager")
    compiled = short_fit([*base, "model.compile=true"], tmp_path / "compiled")
    assert getattr(compiled[1].model, "_compiled_call_impl", None) is not None
    assert getattr(eager[1].model, "_compiled_call_impl", None) is None
    _assert_same_training(eager, compiled)


@pytest.mark.parametrize("family", ["segmentation", "detection"])
def test_channels_last_trains_like_contiguous(tmp_path: Path, family: str) -> None:
    base = [*TINY_SEG, *SMALL_UNET] if family == "segmentation" else [*TINY_DET]
    if family == "detection":
        # SGD: AdamW's first steps move even a rounding-noise gradient by a whole lr, which makes
        # two equally right layouts drift apart within a few steps
        base += ["data.image_size=64", "data.batch_size=4", "optimizer=sgd"]
    plain = short_fit([*base, "model.channels_last=false"], tmp_path / "plain")
    nhwc = short_fit([*base, "model.channels_last=true"], tmp_path / "nhwc")
    convs = [m for m in nhwc[1].modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
        for m in convs
        if m.kernel_size != (1, 1)  # a 1×1 kernel is contiguous in both layouts
    )
    assert all(nhwc[0].channels_last) and not any(plain[0].channels_last)
    _assert_same_training(plain, nhwc, rtol=1e-4, atol=1e-4)


def test_channels_last_auto_follows_the_device(tmp_path: Path) -> None:
    cfg = compose(TINY_SEG, tmp_path)
    _, module, _ = build_run(cfg, tmp_path)
    assert module.channels_last == "auto" and not module.uses_channels_last()  # no trainer
    module._trainer = on("cuda")
    assert module.uses_channels_last()  # a conv net trained on CUDA
    module.channels_last = False
    assert not module.uses_channels_last()
    with pytest.raises(ValueError, match="model.channels_last"):
        SegmentationModule(
            **{**module.hparams, "model": {**module.hparams.model, "channels_last": "yes"}}
        )


@pytest.mark.parametrize("overrides", [TINY_SEG, TINY_DET])
def test_bf16_mixed_precision_trains(tmp_path: Path, overrides: list[str]) -> None:
    """``trainer=gpu``'s precision, bf16-mixed, through each family's training step (Lightning
    runs CPU autocast here): the forward really is bf16 and the loss is finite."""
    extra = [*SMALL_UNET] if overrides is TINY_SEG else ["data.image_size=64", "data.batch_size=4"]
    seen: list[torch.dtype] = []

    def grab(_module, _inputs, output) -> None:
        seen.append(output.dtype)

    pl.seed_everything(0, workers=True, verbose=False)
    cfg = compose([*overrides, *extra, *SHORT, "trainer.precision=bf16-mixed"], tmp_path)
    trainer, module, datamodule = build_run(cfg, tmp_path)
    conv = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(grab)
    record = StepLosses()
    trainer.callbacks.append(record)
    trainer.fit(module, datamodule=datamodule)
    assert len(record.losses) == 3 and all(torch.isfinite(torch.tensor(record.losses)))
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert all(p.dtype == torch.float32 for p in module.parameters())  # fp32 master weights


def on(device: str) -> SimpleNamespace:
    """A stand-in trainer whose strategy runs on ``device``."""
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def _datamodule(tmp_path: Path, pin: object) -> SegmentationDataModule:
    return SegmentationDataModule(
        format="mask_folder",
        root=None,
        synthetic={"name": "shapes", "num_train": 4, "num_val": 2, "size": 32},
        num_classes=4,
        image_size=[32, 32],
        pin_memory=pin,
    )


def test_pin_memory_auto_follows_the_trainer(tmp_path: Path) -> None:
    dm = _datamodule(tmp_path, "auto")
    assert dm.pin_memory is False  # no trainer attached
    dm.trainer = on("cpu")
    assert dm.pin_memory is False
    dm.trainer = on("cuda")
    assert dm.pin_memory is True
    assert _datamodule(tmp_path, True).pin_memory is True
    assert _datamodule(tmp_path, False).pin_memory is False
    with pytest.raises(DataError, match="data.pin_memory='yes'"):
        _datamodule(tmp_path, "yes")


def test_gpu_trainer_config_sets_the_gpu_path(tmp_path: Path) -> None:
    cfg = compose([*TINY_SEG, "trainer=gpu"], tmp_path)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.benchmark is True  # cudnn.benchmark
    assert cfg.model.channels_last == "auto" and cfg.model.compile is False
    assert cfg.data.pin_memory == "auto" and cfg.data.persistent_workers is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_gpu_trainer_without_a_gpu_says_so(tmp_path: Path) -> None:
    from visionzoo.cli import UserError, build_trainer

    cfg = compose([*TINY_SEG, "trainer=gpu"], tmp_path)
    with pytest.raises(UserError, match="no CUDA GPU.*trainer=cpu"):
        build_trainer(cfg, tmp_path)
