"""ImageFolder classification data: ``<root>/<split>/<class name>/<image>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.io import DataError, list_images, read_rgb


class ImageFolderDataset(Dataset):
    """``(path, label)`` samples → ``{"image": (3, H, W) float in [-1, 1], "label", "path"}``.

    Keys are indices or ``(index, seed, ...)`` from ``SeededSampler``; with ``hflip`` the seed
    decides the flip, so a resumed run repeats it."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Any, hflip: bool) -> None:
        self.samples = samples
        self.transform = transform
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        index, seed = (key[0], key[1]) if isinstance(key, tuple) else (key, key)
        path, label = self.samples[index]
        image = self.transform(read_rgb(path))
        if self.hflip and seed % 2:
            image = image.flip(-1)
        return {"image": image, "label": label, "path": str(path)}


class ToTensor:
    """An ``(H, W, 3)`` uint8 image → a ``(3, size, size)`` float tensor scaled to [-1, 1]."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        resized = np.asarray(Image.fromarray(image).resize((self.size, self.size)))
        return torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


class ToyDataModule(VisionDataModule):
    """Classification data in an ImageFolder tree; class names are the sub-folders of the
    training split (sorted) unless ``class_names`` lists them."""

    task = "toy"

    def __init__(
        self,
        *,
        root: str | None = None,
        class_names: list[str] | None = None,
        splits: dict[str, str] | None = None,
        image_size: int = 32,
        hflip: bool = True,
        **loader_kw: Any,
    ) -> None:
        super().__init__(root=root, **loader_kw)
        self._class_names = list(class_names) if class_names else None
        self.splits = dict(splits or {"train": "train", "val": "val", "test": "val"})
        self.hflip = hflip
        self.eval_tf = ToTensor(image_size)

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            folder = self.root / self.splits["train"]
            if not folder.is_dir():
                raise DataError(f"no training split folder {str(folder)!r}; check data.root")
            self._class_names = sorted(p.name for p in folder.iterdir() if p.is_dir())
        return self._class_names

    def samples(self, stage: str) -> list[tuple[Path, int]]:
        folder = self.root / self.splits[stage]
        out = [
            (path, label)
            for label, name in enumerate(self.class_names)
            for path in list_images(folder / name)
        ]
        if not out:
            raise DataError(f"no images under {str(folder)!r}/<class>/; check data.root")
        return out

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for s in stages.get(stage or "fit", ("train", "val")):
            if s not in self.datasets:
                hflip = self.hflip and s == "train"
                self.datasets[s] = ImageFolderDataset(self.samples(s), self.eval_tf, hflip)

    @property
    def meta(self) -> dict[str, Any]:
        return {"num_classes": len(self.class_names), "class_names": self.class_names}
