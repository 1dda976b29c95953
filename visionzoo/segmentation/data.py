"""Segmentation dataset and data module over the formats in ``formats/segmentation.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.transforms import seed_pipeline
from visionzoo.segmentation.formats import (
    CAMVID_CLASSES,
    VOC_CLASSES,
    MaskDecoder,
    Pair,
    camvid_pairs,
    is_list_file,
    list_file_pairs,
    mask_folder_pairs,
    voc_pairs,
)
from visionzoo.segmentation.transforms import segmentation_transform

FORMATS = ("mask_folder", "voc", "camvid")


class SegmentationDataset(Dataset):
    """(image, mask) pairs → ``{"image": (3, H, W) float, "mask": (H, W) long, "path": str}``.

    Keys are indices or ``(index, seed)`` from ``SeededSampler``; the seed fixes the random
    augmentation of that sample so resumed runs repeat it exactly. With ``native_masks`` the
    transform (evaluation only: resize + normalise) touches the image alone and the mask keeps
    the label file's resolution, so metrics are computed there (MMSegmentation's convention).
    """

    def __init__(
        self,
        pairs: list[Pair],
        decoder: MaskDecoder,
        transform: A.Compose,
        *,
        native_masks: bool = False,
    ) -> None:
        self.pairs = pairs
        self.decoder = decoder
        self.transform = transform
        self.native_masks = native_masks
        self.ignore_index = decoder.ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, key)
        image_path, mask_path = self.pairs[index]
        image, mask = read_rgb(image_path), self.decoder(mask_path)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"image {str(image_path)!r} is {image.shape[1]}×{image.shape[0]} but its mask "
                f"{str(mask_path)!r} is {mask.shape[1]}×{mask.shape[0]}; they must match"
            )
        seed_pipeline(self.transform, seed)
        if self.native_masks:
            image_t = self.transform(image=image)["image"]
            return {
                "image": image_t,
                "mask": torch.from_numpy(mask.astype(np.int64)),
                "path": str(image_path),
            }
        out = self.transform(image=image, mask=mask.astype(np.uint8))
        return {"image": out["image"], "mask": out["mask"].long(), "path": str(image_path)}

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack a batch; native-resolution masks of different sizes are padded at the bottom
        and right with ``ignore_index`` and their sizes kept in ``mask_size`` (B, 2)."""
        masks = [b["mask"] for b in batch]
        out = {
            "image": torch.stack([b["image"] for b in batch]),
            "path": [b["path"] for b in batch],
        }
        if len({m.shape for m in masks}) == 1:
            out["mask"] = torch.stack(masks)
            return out
        h, w = max(m.shape[0] for m in masks), max(m.shape[1] for m in masks)
        padded = torch.full((len(masks), h, w), self.ignore_index, dtype=masks[0].dtype)
        for i, m in enumerate(masks):
            padded[i, : m.shape[0], : m.shape[1]] = m
        out["mask"] = padded
        out["mask_size"] = torch.tensor([m.shape for m in masks])
        return out


def check_ignored_share(
    pairs: list[Pair], decoder: MaskDecoder, class_names: list[str], sample: int = 16
) -> None:
    """Refuse training data whose masks are mostly ``ignore_index`` while declared classes never
    occur: the signature of 0/255 binary masks read without ``data.value_map`` (255 is the
    default ignore index), which would train on nothing and report a perfect mIoU. Reads up to
    ``sample`` masks spread over the split."""
    if not pairs:
        return
    step = max(len(pairs) // sample, 1)
    counts = np.zeros(decoder.num_classes + 1, np.int64)  # the last entry: ignored pixels
    for _, mask_path in pairs[::step][:sample]:
        try:
            mask = decoder(mask_path)
        except DataError:  # reported, with its file, when the loader reaches it
            continue
        ignored = mask == decoder.ignore_index
        counts[-1] += int(ignored.sum())
        counts[:-1] += np.bincount(mask[~ignored].ravel(), minlength=decoder.num_classes)
    share = counts[-1] / max(int(counts.sum()), 1)
    absent = [n for n, c in zip(class_names, counts[:-1], strict=True) if c == 0]
    if share > 0.5 and absent:
        raise DataError(
            f"{share:.0%} of the pixels in {str(pairs[0][1].parent)!r} equal ignore_index="
            f"{decoder.ignore_index} and class(es) {', '.join(absent)} never occur: for 0/255 "
            "masks set data.value_map={0: 0, 255: 1} (or another data.ignore_index)"
        )


class SegmentationDataModule(VisionDataModule):
    """Segmentation data in one of ``FORMATS``; class names default to the format's own."""

    task = "segmentation"

    def __init__(
        self,
        *,
        format: str = "mask_folder",
        root: str | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        splits: dict[str, str | None] | None = None,
        images: str = "images",
        masks: str = "masks",
        value_map: dict[int, int] | None = None,
        palette: list[list[int]] | None = None,
        list_prefix: dict[str, str] | None = None,
        ignore_index: int = 255,
        image_size: list[int] | None = (256, 256),
        eval_image_size: list[int] | None = None,
        eval_native_labels: bool = True,
        augment: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        **loader_kw: Any,
    ) -> None:
        super().__init__(root=root, **loader_kw)
        if format not in FORMATS:
            raise DataError(f"unknown data.format {format!r}; choose one of {', '.join(FORMATS)}")
        self.format = format
        if class_names is None:
            class_names = {"voc": VOC_CLASSES, "camvid": CAMVID_CLASSES}.get(format)
        if format == "camvid" and value_map is None:
            value_map = {**{i: i for i in range(11)}, 11: ignore_index}
        if num_classes is None and class_names is None:
            raise DataError("set data.num_classes (or data.class_names) for a mask_folder dataset")
        self.num_classes = num_classes or len(class_names)
        self.class_names = list(class_names or [f"class_{i}" for i in range(self.num_classes)])
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"data.class_names has {len(self.class_names)} names but data.num_classes is "
                f"{self.num_classes}"
            )
        if not 0 <= ignore_index <= 255:
            raise DataError(f"data.ignore_index={ignore_index} must be in 0..255 (masks are 8-bit)")
        self.splits = dict(splits or {"train": "train", "val": "val", "test": "val"})
        self.images, self.masks = images, masks
        self.list_prefix = list_prefix
        self.ignore_index = ignore_index
        self.decoder = MaskDecoder(self.num_classes, ignore_index, value_map, palette)
        norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
        self.train_tf = segmentation_transform(
            train=True, image_size=image_size, **(augment or {}), **norm
        )
        self.eval_native_labels = eval_native_labels
        self.eval_tf = segmentation_transform(
            train=False, image_size=eval_image_size or image_size, **norm
        )

    def pairs(self, stage: str) -> list[Pair]:
        split = self.splits.get(stage)
        if is_list_file(split):  # the dataset's own "image label" lines, for any format
            return list_file_pairs(self.root, split, self.list_prefix, stage=stage)
        if self.format == "voc":
            return voc_pairs(self.root, split, stage=stage)
        if self.format == "camvid":
            return camvid_pairs(self.root, split)
        return mask_folder_pairs(self.root, split, self.images, self.masks, stage=stage)

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for s in stages.get(stage or "fit", ("train", "val")):
            if s not in self.datasets:
                tf = self.train_tf if s == "train" else self.eval_tf
                pairs = self.pairs(s)
                if s == "train":
                    check_ignored_share(pairs, self.decoder, self.class_names)
                native = s != "train" and self.eval_native_labels
                self.datasets[s] = SegmentationDataset(pairs, self.decoder, tf, native_masks=native)

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "ignore_index": self.ignore_index,
        }

    def mask_paths(self, stage: str = "train") -> list[Path]:
        """Mask files of a stage (for class-weight estimation)."""
        return [m for _, m in self.pairs(stage)]
