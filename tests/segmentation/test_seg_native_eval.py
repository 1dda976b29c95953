"""Evaluation at the labels' native resolution: masks of mixed sizes batch with ignore padding,
logits are resized to each label's own size, and the module's mIoU equals torchmetrics' on
the per-image predictions made that way (the padding never counts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from visionzoo.segmentation.data import SegmentationDataModule
from visionzoo.segmentation.inference import logits_at_labels
from visionzoo.segmentation.metrics import SegmentationMetrics

SIZES = [(40, 56), (64, 48), (40, 56)]  # (H, W) of each image / mask file


def _dataset(root: Path) -> SegmentationDataModule:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, (h, w) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        Image.fromarray(rng.integers(0, 3, (h, w)).astype(np.uint8)).save(
            root / "masks" / f"{i}.png"
        )
    dm = SegmentationDataModule(
        format="mask_folder",
        root=str(root),
        num_classes=3,
        splits={"train": "0:3", "val": "0:3", "test": "0:3"},
        image_size=[32, 32],
        batch_size=3,
        num_workers=0,
    )
    dm.setup("validate")
    return dm


def test_mixed_size_masks_are_padded_with_ignore(tmp_path: Path) -> None:
    batch = next(iter(_dataset(tmp_path).val_dataloader()))
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["mask"].shape == (3, 64, 56)
    assert batch["mask_size"].tolist() == [list(s) for s in SIZES]
    for i, (h, w) in enumerate(SIZES):
        stored = np.array(Image.open(tmp_path / "masks" / f"{i}.png"))
        assert torch.equal(batch["mask"][i, :h, :w], torch.from_numpy(stored.astype(np.int64)))
        assert (batch["mask"][i, h:] == 255).all() and (batch["mask"][i, :, w:] == 255).all()


def test_metrics_at_native_resolution_equal_torchmetrics(tmp_path: Path) -> None:
    batch = next(iter(_dataset(tmp_path).val_dataloader()))
    logits = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = SegmentationMetrics(3, 255)
    ours.update(
        logits_at_labels(logits, batch["mask"], batch["mask_size"]).argmax(1), batch["mask"]
    )
    reference = MulticlassJaccardIndex(3, average="macro")
    for i, (h, w) in enumerate(SIZES):
        native = F.interpolate(logits[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)
        reference.update(native.argmax(1), batch["mask"][i : i + 1, :h, :w])
    torch.testing.assert_close(ours.compute()["miou"], reference.compute(), atol=1e-6, rtol=0)
