"""The AVA data module: images missing from the folder, the δ margin and disjoint splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose
from PIL import Image

from visionzoo.aesthetics.data import AestheticsDataModule
from visionzoo.aesthetics.formats import write_ava_txt
from visionzoo.cli import build_run
from visionzoo.core.io import DataError

# Vote counts giving means 2, 4.5, 5.2, 6, 8, 9 (one voter per listed score, 2 voters each).
SCORES = [2, 4, 5, 6, 8, 9]


def ava_folder(root: Path, present: list[int]) -> Path:
    """An AVA.txt of 12 images (ids 1000..1011) with only the ``present`` ones on disk, and id
    lists: train = the first 8 ids, val = the last 4."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(12):
        votes = [0] * 10
        votes[SCORES[i % 6] - 1] = 2 + i  # unequal vote totals
        rows.append((str(1000 + i), votes, 0, 0, 1))
        if i in present:
            pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"{1000 + i}.jpg")
    write_ava_txt(root / "AVA.txt", rows)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(str(1000 + i) for i in range(8)))
    (root / "splits" / "val.txt").write_text("\n".join(str(1000 + i) for i in range(8, 12)))
    return root


def test_missing_images_are_reported_with_count_ids_folder_and_the_fix(tmp_path: Path) -> None:
    root = ava_folder(tmp_path / "ava", present=[0, 1, 4, 5, 6, 7, 8, 9, 10, 11])
    (root / "images" / "1004.jpg").write_bytes(b"not a jpeg")  # unreadable counts too
    dm = AestheticsDataModule(root=str(root), image_size=16)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "\n" not in message
    assert "3 of 8 train images" in message and "1002, 1003, 1004" in message
    assert str(root / "images") in message and "data.skip_missing=true" in message


def test_skip_missing_trains_on_the_rest(tmp_path: Path) -> None:
    root = ava_folder(tmp_path / "ava", present=[0, 1, 4, 5, 6, 7, 8, 10, 11])
    overrides = [
        "task=aesthetics",
        "data=ava",
        f"data.root={root}",
        "data.skip_missing=true",
        "data.splits.train=splits/train.txt",
        "data.splits.val=splits/val.txt",
        "data.splits.test=splits/val.txt",
        "data.image_size=16",
        "data.batch_size=4",
        "data.num_workers=0",
        "model=rapid",
        "model.columns=1",
        "model.width=4",
        "task.plots=false",
        "trainer.fast_dev_run=true",
        "logger=none",
        "callbacks.progress=none",
    ]
    trainer, module, datamodule = build_run(compose(overrides, tmp_path), tmp_path)
    with pytest.warns(UserWarning, match=r"2 of 8 train images .* \(first: 1002, 1003\)"):
        trainer.fit(module, datamodule=datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert len(datamodule.datasets["train"]) == 6 and len(datamodule.datasets["val"]) == 3
    assert datamodule.skipped == {"train": ["1002", "1003"], "val": ["1009"]}


def test_delta_drops_ambiguous_training_images_only(tmp_path: Path) -> None:
    root = ava_folder(tmp_path / "ava", present=list(range(12)))
    dm = AestheticsDataModule(root=str(root), image_size=16, delta=1.5)
    dm.setup("fit")
    train = [r.mean for r in dm.datasets["train"].records]
    assert train == [2.0, 8.0, 9.0, 2.0]  # the first 8 means are 2 4 5 6 8 9 2 4
    assert sorted(r.mean for r in dm.datasets["val"].records) == [5.0, 6.0, 8.0, 9.0]


def test_overlapping_splits_are_refused(tmp_path: Path) -> None:
    root = ava_folder(tmp_path / "ava", present=list(range(12)))
    dm = AestheticsDataModule(root=str(root), splits={"train": "0:9", "val": "8:"})
    with pytest.raises(DataError, match="1 val images are also training images"):
        dm.setup("fit")
