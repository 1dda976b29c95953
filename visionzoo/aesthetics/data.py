"""Aesthetics dataset and data module over the AVA and CSV readers of ``formats.py``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from visionzoo.aesthetics.formats import (
    NUM_BINS,
    THRESHOLD,
    ScoreRecord,
    read_ava_txt,
    read_id_list,
    read_score_csv,
)
from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.io import DataError, read_rgb

FORMATS = ("ava", "csv")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHOWN = 5  # ids listed in a missing-image report


class AestheticsDataset(Dataset):
    """Labelled images → ``{"image": (3, S, S) warped whole image, "crops": (K, 3, c, c) crops
    at full resolution (when ``num_crops`` > 0), "dist": (10,) vote distribution (zeros when
    unknown), "mean", "high" (mean ≥ 5), "index", "image_id", "path"}``.

    Keys are indices or ``(index, seed)`` from ``SeededSampler``; in training the seed draws the
    flip and crop positions, so a resumed run repeats them; evaluation crops depend on the index
    only. With ``skip_broken`` an image that fails to decode is dropped from its batch."""

    def __init__(
        self,
        records: list[ScoreRecord],
        folder: Path,
        *,
        train: bool,
        image_size: int,
        num_crops: int = 0,
        crop_size: int = 224,
        hflip: bool = True,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        skip_broken: bool = False,
    ) -> None:
        self.records, self.folder, self.train = records, folder, train
        self.image_size, self.num_crops, self.crop_size = image_size, num_crops, crop_size
        self.hflip = hflip and train
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.skip_broken = skip_broken

    def __len__(self) -> int:
        return len(self.records)

    def normalise(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 → (3, H, W) float, normalised by ``mean`` / ``std``."""
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
        return (x - self.mean) / self.std

    def views(self, image: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The warped whole image and ``num_crops`` full-resolution crops of one image."""
        if self.hflip and rng.random() < 0.5:
            image = image[:, ::-1]
        size = self.image_size
        warped = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        out = {"image": self.normalise(warped)}
        if self.num_crops:
            c = self.crop_size
            h, w = image.shape[:2]
            if min(h, w) < c:  # small images are enlarged until a crop fits
                scale = c / min(h, w)
                h, w = max(c, round(h * scale)), max(c, round(w * scale))
                image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
            ys = rng.integers(0, h - c + 1, self.num_crops)
            xs = rng.integers(0, w - c + 1, self.num_crops)
            out["crops"] = torch.stack(
                [self.normalise(image[y : y + c, x : x + c]) for y, x in zip(ys, xs, strict=True)]
            )
        return out

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any] | None:
        index, seed = (key[0], key[1]) if isinstance(key, tuple) else (key, key)
        record = self.records[index]
        path = self.folder / record.file_name
        try:
            image = read_rgb(path)
        except DataError as err:
            if self.skip_broken:
                return None
            raise DataError(f"{err}; or set data.skip_missing=true to skip such images") from None
        rng = np.random.default_rng(seed if self.train else index)
        dist = np.zeros(NUM_BINS) if record.votes is None else np.asarray(record.votes)
        return {
            **self.views(image, rng),
            "dist": torch.tensor(dist / max(dist.sum(), 1.0), dtype=torch.float32),
            "mean": torch.tensor(record.mean, dtype=torch.float32),
            "high": torch.tensor(float(record.mean >= THRESHOLD)),
            "index": index,
            "image_id": record.image_id,
            "path": str(path),
        }

    @staticmethod
    def collate(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
        """Stack tensors, list the rest; samples that failed to decode (``None``) are dropped."""
        batch = [b for b in batch if b is not None]
        if not batch:
            return None
        return {
            k: torch.stack([b[k] for b in batch])
            if torch.is_tensor(batch[0][k])
            else [b[k] for b in batch]
            for k in batch[0]
        }


def unreadable(records: list[ScoreRecord], folder: Path, verify: bool) -> list[ScoreRecord]:
    """Records whose image file is missing, empty or (with ``verify``) has no readable image
    header; decoding the pixels is left to the loader."""
    bad = []
    for record in records:
        path = folder / record.file_name
        if not path.is_file() or path.stat().st_size == 0:
            bad.append(record)
        elif verify:
            try:
                with Image.open(path):
                    pass
            except (UnidentifiedImageError, OSError):
                bad.append(record)
    return bad


class AestheticsDataModule(VisionDataModule):
    """Images with vote distributions or mean scores, in AVA (``AVA.txt``) or CSV format.

    ``splits`` maps train / val / test to an id-list file under ``root`` (the official AVA
    lists, one id per line), a row slice ``"a:b"`` of the label file, or ``null`` (all rows).
    ``delta`` > 0 drops training images whose mean lies within ``delta`` of 5 (Murray et al.'s
    δ margin for high/low classification); validation and test keep every image."""

    task = "aesthetics"

    def __init__(
        self,
        *,
        format: str = "ava",
        root: str | None = None,
        labels: str = "AVA.txt",
        images: str = "images",
        image_suffix: str = ".jpg",
        splits: dict[str, str | None] | None = None,
        delta: float = 0.0,
        skip_missing: bool = False,
        verify_images: bool = True,
        image_size: int = 224,
        num_crops: int = 0,
        crop_size: int = 224,
        hflip: bool = True,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        **loader_kw: Any,
    ) -> None:
        super().__init__(root=root, **loader_kw)
        if format not in FORMATS:
            raise DataError(f"unknown data.format {format!r}; choose one of {', '.join(FORMATS)}")
        if delta < 0:
            raise DataError(f"data.delta={delta}: the high/low margin must be ≥ 0")
        if num_crops < 0 or crop_size < 1:
            raise DataError(
                f"data.num_crops={num_crops}, data.crop_size={crop_size}: need ≥ 0, ≥ 1"
            )
        self.format, self.labels, self.images, self.suffix = format, labels, images, image_suffix
        self.splits = dict(splits or {"train": "splits/train.txt", "val": "splits/val.txt"})
        self.delta, self.skip_missing, self.verify_images = delta, skip_missing, verify_images
        self.view_kw = {
            "image_size": image_size,
            "num_crops": num_crops,
            "crop_size": crop_size,
            "mean": tuple(mean or IMAGENET_MEAN),
            "std": tuple(std or IMAGENET_STD),
        }
        self.hflip = hflip
        self.eval_tf = AestheticsDataset([], Path(), train=False, **self.view_kw)
        self._records: list[ScoreRecord] | None = None
        self.skipped: dict[str, list[str]] = {}  # per stage: ids skipped as missing/unreadable

    @property
    def folder(self) -> Path:
        return self.root / self.images

    def records(self) -> list[ScoreRecord]:
        """Every row of the label file."""
        if self._records is None:
            path = self.root / self.labels
            if self.format == "ava":
                self._records = read_ava_txt(path, self.suffix)
            else:
                self._records = read_score_csv(path)
        return self._records

    def split_records(self, stage: str) -> list[ScoreRecord]:
        """The rows of ``stage`` (``data.splits``), before any image check."""
        records = self.records()
        spec = self.splits.get(stage, self.splits.get("val") if stage == "test" else None)
        if spec is None:
            return list(records)
        if ":" in spec and not (self.root / spec).is_file():
            try:
                a, b = (int(v) if v.strip() else None for v in spec.split(":"))
            except ValueError:
                raise DataError(f"data.splits.{stage}={spec!r}: use a list file or 'a:b'") from None
            chosen = records[a:b]
            if not chosen:
                raise DataError(
                    f"data.splits.{stage}={spec!r} selects none of the {len(records)} rows of "
                    f"{str(self.root / self.labels)!r}; give another slice or an id-list file"
                )
            return chosen
        ids = set(read_id_list(self.root / spec))
        chosen = [r for r in records if r.image_id in ids or Path(r.file_name).stem in ids]
        if not chosen:
            raise DataError(
                f"data.splits.{stage}={spec!r}: none of its {len(ids)} ids is in "
                f"{str(self.root / self.labels)!r}; check the list and data.labels"
            )
        return chosen

    def checked(self, stage: str, records: list[ScoreRecord]) -> list[ScoreRecord]:
        """``records`` without missing or unreadable images, when ``skip_missing`` allows it;
        otherwise a one-line ``DataError`` naming the count, the first ids and the folder."""
        bad = unreadable(records, self.folder, self.verify_images)
        if not bad:
            return records
        ids = [r.image_id for r in bad]
        report = (
            f"{len(bad)} of {len(records)} {stage} images listed in {self.labels} are missing "
            f"or unreadable in {str(self.folder)!r} (first: {', '.join(ids[:SHOWN])})"
        )
        if not self.skip_missing:
            raise DataError(f"{report}; restore them or set data.skip_missing=true to use the rest")
        if len(bad) == len(records):
            raise DataError(f"{report}: no {stage} image is left; check data.root/data.images")
        warnings.warn(f"{report}; skipped (data.skip_missing=true)", stacklevel=2)
        self.skipped[stage] = ids
        dropped = set(ids)
        return [r for r in records if r.image_id not in dropped]

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for s in stages.get(stage or "fit", ("train", "val")):
            if s in self.datasets:
                continue
            records = self.checked(s, self.split_records(s))
            if s == "train":
                self._check_disjoint(records)
                if self.delta > 0:
                    records = [r for r in records if abs(r.mean - THRESHOLD) >= self.delta]
                    if not records:
                        raise DataError(f"data.delta={self.delta} leaves no training image")
            self.datasets[s] = AestheticsDataset(
                records,
                self.folder,
                train=s == "train",
                hflip=self.hflip,
                skip_broken=self.skip_missing,
                **self.view_kw,
            )

    def _check_disjoint(self, train: list[ScoreRecord]) -> None:
        """Held-out splits must not share images with the training split."""
        ids = {r.image_id for r in train}
        for stage in ("val", "test"):
            shared = [r.image_id for r in self.split_records(stage) if r.image_id in ids]
            if shared:
                raise DataError(
                    f"data.splits: {len(shared)} {stage} images are also training images "
                    f"(first: {', '.join(shared[:SHOWN])}); give disjoint splits"
                )

    def has_votes(self) -> bool:
        """Whether the labels carry vote distributions (not only mean scores)."""
        return all(r.votes is not None for r in self.records())

    @property
    def meta(self) -> dict[str, Any]:
        return {"num_bins": NUM_BINS, "threshold": THRESHOLD}
