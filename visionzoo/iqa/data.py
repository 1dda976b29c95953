"""Image-quality dataset and data module over the readers of ``formats.py``, split by reference
image (``splits.py``), with the episode sampler of the meta-learning phase (MetaIQA)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.sampler import EpochBatchSampler, SeededSampler
from visionzoo.iqa.formats import QualityRecord, read_fr_csv, read_kadid, read_nr_csv, read_tid2013
from visionzoo.iqa.splits import split_records

FORMATS = ("tid2013", "kadid10k", "fr_csv", "nr_csv")


def to_tensor(image: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) float in [0, 1], resized (bicubic) to ``size`` = (H, W)."""
    if size is not None and image.shape[:2] != tuple(size):
        image = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0  # writable copy


class IQADataset(Dataset):
    """Rated images → ``{"image": (3, H, W) distorted image in [0, 1], "reference": (3, H, W)
    (full-reference data only), "mos", "index", "distortion" (type or ""), "ref_id", "path"}``.

    Keys are indices or ``(index, seed)`` from the samplers; in training the seed draws the crop
    position and the flip, applied alike to both images, so a resumed run repeats them."""

    def __init__(
        self,
        records: list[QualityRecord],
        root: Path,
        *,
        train: bool,
        image_size: tuple[int, int] | None = None,
        crop_size: int | None = None,
        hflip: bool = True,
    ) -> None:
        self.records, self.root, self.train = records, root, train
        self.image_size, self.crop_size, self.hflip = image_size, crop_size, hflip and train

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        index, seed = (key[0], key[1]) if isinstance(key, tuple) else (key, key)
        record = self.records[index]
        images = [read_rgb(self.root / record.distorted)]
        if record.reference is not None:
            images.append(read_rgb(self.root / record.reference))
        tensors = [to_tensor(im, self.image_size) for im in images]
        if len(tensors) == 2 and tensors[0].shape != tensors[1].shape:
            raise DataError(
                f"{record.distorted} is {tuple(tensors[0].shape[1:])} but its reference "
                f"{record.reference} is {tuple(tensors[1].shape[1:])}; set data.image_size"
            )
        if self.train:
            rng = np.random.default_rng(seed)
            h, w = tensors[0].shape[1:]
            c = self.crop_size
            if c is not None and min(h, w) > c:
                y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
                tensors = [t[:, y : y + c, x : x + c] for t in tensors]
            if self.hflip and rng.random() < 0.5:
                tensors = [t.flip(-1) for t in tensors]
        out = {
            "image": tensors[0],
            "mos": torch.tensor(record.mos, dtype=torch.float32),
            "index": index,
            "distortion": record.distortion or "",
            "ref_id": record.ref_id,
            "path": str(self.root / record.distorted),
        }
        if len(tensors) == 2:
            out["reference"] = tensors[1]
        return out

    @staticmethod
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack tensors, list the rest; images of one batch must have one size."""
        sizes = {tuple(b["image"].shape) for b in batch}
        if len(sizes) > 1:
            raise DataError(
                f"images of sizes {sorted(sizes)[:3]} in one batch: set data.image_size=[H,W] "
                "to resize them, or data.eval_batch_size=1"
            )
        return {
            k: torch.stack([b[k] for b in batch])
            if torch.is_tensor(batch[0][k])
            else [b[k] for b in batch]
            for k in batch[0]
        }


class EpisodeBatchSampler(EpochBatchSampler):
    """MetaIQA's episodes for the first ``meta_epochs`` epochs, plain shuffled batches after.

    An episode batch holds ``tasks`` blocks of ``support + query`` samples, each block from one
    distortion type (drawn at random among the types with enough samples), support first. Every
    epoch has the same number of batches (``len``), so Lightning's epoch length and schedules do
    not change between the phases. Order depends on (seed, epoch, rank) only: exact resume."""

    def __init__(
        self,
        groups: dict[str, list[int]],
        *,
        num_samples: int,
        batch_size: int,
        meta_epochs: int,
        support: int,
        query: int,
        tasks: int,
        seed: int = 0,
    ) -> None:
        block = support + query
        self.groups = {k: v for k, v in sorted(groups.items()) if len(v) >= block}
        if not self.groups:
            raise DataError(
                f"meta-training needs distortion types with ≥ {block} training images "
                f"(task.meta.support + task.meta.query); the largest has "
                f"{max((len(v) for v in groups.values()), default=0)}"
            )
        self.plain = SeededSampler(num_samples, shuffle=True, seed=seed)
        self.batch_size, self.meta_epochs = batch_size, meta_epochs
        self.block, self.tasks, self.seed, self.epoch = block, tasks, seed, 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.plain.set_epoch(epoch)

    def __len__(self) -> int:
        return max(1, len(self.plain) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.epoch >= self.meta_epochs:
            keys = list(self.plain)
            for b in range(len(self)):
                yield keys[b * self.batch_size : (b + 1) * self.batch_size]
            return
        rank, _ = SeededSampler._world()
        rng = np.random.default_rng([self.seed, self.epoch, rank])
        names = list(self.groups)
        for _ in range(len(self)):
            batch = []
            for _ in range(self.tasks):
                pool = self.groups[names[int(rng.integers(len(names)))]]
                for i in rng.choice(len(pool), self.block, replace=False):
                    batch.append((pool[i], int(rng.integers(2**31))))
            yield batch


class IQADataModule(VisionDataModule):
    """Rated images in one of ``FORMATS``, split by reference image (``data.splits``).

    ``labels`` is the label file under ``root`` (default per format); ``images`` the folder the
    label file's names are relative to and, for TID2013, ``references`` the reference folder.
    ``label_higher_is_better`` says whether a high label means high quality (MOS, KADID-10k's
    "dmos") or low (a true DMOS, as LIVE's). ``image_size`` resizes every image (``null``: as
    stored; a batch needs one size); ``crop_size`` takes a random crop of that side, the same
    for both images of a pair, in training only (evaluation sees whole images)."""

    task = "iqa"

    DEFAULT_LABELS = {
        "tid2013": "mos_with_names.txt",
        "kadid10k": "dmos.csv",
        "fr_csv": "scores.csv",
        "nr_csv": "scores.csv",
    }

    def __init__(
        self,
        *,
        format: str = "tid2013",
        root: str | None = None,
        labels: str | None = None,
        stds: str | None = "mos_std.txt",
        images: str | None = None,
        references: str = "reference_images",
        splits: dict[str, Any] | None = None,
        label_higher_is_better: bool = True,
        image_size: int | list[int] | None = None,
        crop_size: int | None = None,
        hflip: bool = True,
        **loader_kw: Any,
    ) -> None:
        super().__init__(root=root, **loader_kw)
        if format not in FORMATS:
            raise DataError(f"unknown data.format {format!r}; choose one of {', '.join(FORMATS)}")
        if crop_size is not None and crop_size < 8:
            raise DataError(f"data.crop_size={crop_size}: use ≥ 8 px, or null for whole images")
        self.format = format
        self.labels = labels or self.DEFAULT_LABELS[format]
        self.stds, self.references = stds, references
        default_images = {"tid2013": "distorted_images", "kadid10k": "images"}
        self.images = images if images is not None else default_images.get(format, "")
        self.splits = dict(splits or {"train": 0.6, "val": 0.2, "test": 0.2})
        self.label_higher_is_better = label_higher_is_better
        if isinstance(image_size, int):
            image_size = [image_size, image_size]
        self.image_size = tuple(image_size) if image_size else None
        self.crop_size, self.hflip = crop_size, hflip
        self._records: list[QualityRecord] | None = None
        self._split: dict[str, list[QualityRecord]] | None = None
        self.episodes: dict[str, int] | None = None  # set by the task module (meta phase)

    def records(self) -> list[QualityRecord]:
        """Every row of the label file."""
        if self._records is None:
            if self.format == "tid2013":
                self._records = read_tid2013(
                    self.root, self.labels, self.stds, self.images, self.references
                )
            elif self.format == "kadid10k":
                self._records = read_kadid(self.root, self.labels, self.images)
            elif self.format == "fr_csv":
                self._records = read_fr_csv(self.root / self.labels, self.images)
            else:
                self._records = read_nr_csv(self.root / self.labels, self.images)
        return self._records

    def split(self, stage: str) -> list[QualityRecord]:
        """The records of ``stage``, by reference image (see ``split_records``)."""
        if self._split is None:
            self._split = split_records(self.records(), self.splits, self.seed)
        chosen = self._split[stage]
        if not chosen:
            raise DataError(
                f"data.splits gives the {stage} stage no images ({self.splits}); give it a "
                "fraction > 0 or a list of reference ids"
            )
        return chosen

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """An (H, W, 3) uint8 image as the evaluation loader gives it: (3, H, W) in [0, 1]."""
        return to_tensor(image, self.image_size)

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for s in stages.get(stage or "fit", ("train", "val")):
            if s not in self.datasets:
                self.datasets[s] = IQADataset(
                    self.split(s),
                    self.root,
                    train=s == "train",
                    image_size=self.image_size,
                    crop_size=self.crop_size,
                    hflip=self.hflip,
                )

    def use_episodes(self, *, meta_epochs: int, support: int, query: int, tasks: int) -> None:
        """Draw the first ``meta_epochs`` training epochs as MetaIQA episodes (the task
        module calls this before the training loader is built)."""
        self.episodes = {"meta_epochs": meta_epochs, "support": support, "query": query}
        self.episodes["tasks"] = tasks

    def batch_sampler(self, stage: str, dataset: Dataset) -> Sampler | None:
        if stage != "train" or not self.episodes:
            return None
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(dataset.records):
            if r.distortion is None:
                raise DataError(
                    f"meta-training tasks are distortion types, but {r.distorted} has none "
                    f"(data.format={self.format}); set task.meta.epochs=0"
                )
            groups.setdefault(r.distortion, []).append(i)
        return EpisodeBatchSampler(
            groups,
            num_samples=len(dataset),
            batch_size=self.batch_size,
            seed=self.seed,
            **self.episodes,
        )

    @property
    def meta(self) -> dict[str, Any]:
        """Training-label statistics (the learned models regress standardised scores), label
        direction, and whether the data has references."""
        train = self.split("train")
        mos = np.array([r.mos for r in train])
        return {
            "mos_mean": float(mos.mean()),
            "mos_std": float(mos.std()) or 1.0,
            "label_higher_is_better": self.label_higher_is_better,
            "has_reference": all(r.reference is not None for r in self.records()),
            "distortions": sorted({r.distortion for r in train if r.distortion is not None}),
        }
