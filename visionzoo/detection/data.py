"""Detection dataset (YOLO-style training augmentation) and data module over COCO, YOLO and VOC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.sampler import SeededSampler
from visionzoo.detection import transforms as T
from visionzoo.detection.formats import read_coco, read_voc, read_yolo
from visionzoo.detection.records import DetectionSource

FORMATS = ("coco", "yolo", "voc")

# YOLOv5 / Ultralytics default augmentation (hyp.scratch-low): every key is documented in
# configs/data/synthetic_detection.yaml.
DEFAULT_AUGMENT: dict[str, Any] = {
    "mosaic": 1.0,
    "mixup": 0.0,
    "close_mosaic": 10,
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 0.0,
    "perspective": 0.0,
    "fliplr": 0.5,
    "flipud": 0.0,
    "albumentations": 0.01,
}


class DetectionDataset(Dataset):
    """Records → ``{"image": uint8 (3, H, W), "boxes": (N, 4) xyxy, "labels": (N,), ...}``.

    Training keys are ``(index, seed, epoch)`` from ``SeededSampler``: the seed fixes every
    random choice of that sample (mosaic partners included) so resumed runs repeat it, and the
    epoch switches mosaic off for the final ``close_mosaic`` epochs. Evaluation letterboxes each
    image to its batch's shape (rectangular batches, see ``RectBatchSampler``) and keeps the
    scale and padding to map predictions back to original pixels.
    """

    def __init__(
        self,
        source: DetectionSource,
        *,
        img_size: int,
        train: bool,
        augment: dict[str, Any] | None = None,
        max_epochs: int | None = None,
        cache_images: bool = False,
        stride: int = 32,
    ) -> None:
        self.source = source
        self.records = source.records
        self.img_size = img_size
        self.train = train
        self.augment = {**DEFAULT_AUGMENT, **(augment or {})}
        unknown = set(self.augment) - set(DEFAULT_AUGMENT)
        if unknown:
            raise DataError(
                f"unknown data.augment key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_AUGMENT)}"
            )
        self.max_epochs = max_epochs
        self.stride = stride
        self.albu = T.albu_pipeline(self.augment["albumentations"]) if train else None
        self.eval_shapes: list[tuple[int, int]] | None = None
        self._cache: dict[int, tuple[np.ndarray, float]] | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.records)

    # ----------------------------------------------------------------------------- loading
    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Image resized so its long side is ``img_size``, its training boxes (crowd and
        difficult left out) scaled alike, labels, and the scale factor."""
        rec = self.records[index]
        if self._cache is not None and index in self._cache:
            img, scale = self._cache[index]
        else:
            img = read_rgb(rec.file)
            if img.shape[:2] != (rec.height, rec.width):
                raise DataError(
                    f"image {str(rec.file)!r} is {img.shape[1]}×{img.shape[0]} but its "
                    f"annotation says {rec.width}×{rec.height}; fix the annotation's size"
                )
            interp = (
                cv2.INTER_LINEAR if self.train else T.eval_interpolation(img.shape, self.img_size)
            )
            img, _, scale = T.resize_long_side(img, np.zeros((0, 4)), self.img_size, interp)
            if self._cache is not None:
                self._cache[index] = (img, scale)
        keep = ~rec.ignored
        return img, rec.boxes[keep] * scale, rec.labels[keep], scale

    # ------------------------------------------------------------------------ sample building
    def _mosaic(self, index: int, rng: np.random.Generator):
        others = rng.integers(0, len(self), size=3).tolist()
        items = [self.load(i)[:3] for i in [index, *others]]
        img, boxes, labels = T.mosaic4(items, self.img_size, rng)
        return self._affine(img, boxes, labels, rng, border=-self.img_size // 2)

    def _affine(self, img, boxes, labels, rng, border: int = 0):
        a = self.augment
        return T.random_affine(
            img,
            boxes,
            labels,
            rng,
            degrees=a["degrees"],
            translate=a["translate"],
            scale=a["scale"],
            shear=a["shear"],
            perspective=a["perspective"],
            border=(border, border),
        )

    def _train_sample(self, index: int, seed: int, epoch: int):
        rng = np.random.default_rng(seed)
        a = self.augment
        closed = self.max_epochs is not None and epoch >= self.max_epochs - a["close_mosaic"]
        if not closed and rng.random() < a["mosaic"]:
            img, boxes, labels = self._mosaic(index, rng)
            if rng.random() < a["mixup"]:
                other = self._mosaic(int(rng.integers(0, len(self))), rng)
                img, boxes, labels = T.mixup((img, boxes, labels), other, rng)[:3]
        else:
            img, boxes, labels, _ = self.load(index)
            img, boxes, _ = T.letterbox(img, boxes, self.img_size, stride=self.stride)
            img, boxes, labels = self._affine(img, boxes, labels, rng)
        if self.albu is not None:
            img, boxes, labels = T.apply_albu(self.albu, img, boxes, labels, rng)
        img = T.augment_hsv(img, rng, a["hsv_h"], a["hsv_s"], a["hsv_v"])
        img, boxes = T.random_flip(img, boxes, rng, p_lr=a["fliplr"], p_ud=a["flipud"])
        return img, boxes, labels

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        index, seed, epoch = (tuple(key) + (0, 0))[:3] if isinstance(key, tuple) else (key, 0, 0)
        rec = self.records[index]
        if self.train:
            img, boxes, labels = self._train_sample(index, seed, epoch)
            ratio, pad = 1.0, (0.0, 0.0)
        else:
            img, boxes, labels, scale = self.load(index)
            shape = self.eval_shapes[index] if self.eval_shapes else (self.img_size,) * 2
            img, boxes, (lb_ratio, pad) = T.letterbox(
                img, boxes, shape, stride=self.stride, scaleup=False
            )
            ratio = scale * lb_ratio
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
            "image_id": rec.image_id,
            "orig_size": (rec.height, rec.width),
            "ratio_pad": (float(ratio), (float(pad[0]), float(pad[1]))),
            "path": str(rec.file),
        }

    @staticmethod
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "image": torch.stack([b["image"] for b in batch]),
            "targets": [{"boxes": b["boxes"], "labels": b["labels"]} for b in batch],
            **{k: [b[k] for b in batch] for k in ("image_id", "orig_size", "ratio_pad", "path")},
        }

    def set_rect_shapes(self, batch_size: int, pad: float = 0.5) -> list[list[int]]:
        """Sort images by aspect ratio and give each batch the smallest stride-multiple shape
        that fits its images at ``img_size`` (YOLOv5's rectangular evaluation); returns the
        batches of indices."""
        aspect = np.array([r.height / r.width for r in self.records])
        order = np.argsort(aspect, kind="stable")
        batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        shapes: list[tuple[int, int]] = [(self.img_size, self.img_size)] * len(self)
        for b in batches:
            hw = T.rect_shape(aspect[b].min(), aspect[b].max(), self.img_size, self.stride, pad)
            for i in b:
                shapes[i] = hw
        self.eval_shapes = shapes
        return batches


class RectBatchSampler(Sampler[list[int]]):
    """Fixed evaluation batches (grouped by aspect ratio); DDP ranks take every world-th
    batch, without padding, so no image is evaluated twice."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def _mine(self) -> list[list[int]]:
        if dist.is_available() and dist.is_initialized():
            return self.batches[dist.get_rank() :: dist.get_world_size()]
        return self.batches

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._mine())


class DetectionDataModule(VisionDataModule):
    """Detection data in one of ``FORMATS``; ``splits`` name each stage's data:

    - ``coco``: ``{stage: [annotation JSON, image folder]}`` relative to ``root``;
    - ``yolo``: ``{stage: key in the data YAML}``, with ``root`` the data YAML file;
    - ``voc``: ``{stage: ImageSets/Main split name}`` with ``root`` the VOC folder.

    ``recipe`` holds the training length (``epochs``) and ``nominal_batch_size`` a dataset is
    tuned for, so ``data=<name>`` alone picks a sensible schedule.
    """

    task = "detection"

    def __init__(
        self,
        *,
        format: str = "coco",
        root: str | None = None,
        splits: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        image_size: int = 640,
        augment: dict[str, Any] | None = None,
        rect_eval: bool = True,
        cache_images: bool = False,
        keep_difficult: bool = True,
        recipe: dict[str, Any] | None = None,
        **loader_kw: Any,
    ) -> None:
        super().__init__(root=root, **loader_kw)
        # Training length and nominal batch this dataset is tuned for; the task config reads
        # them (trainer.max_epochs, task.nominal_batch_size), the loaders only need epochs.
        self.recipe = dict(recipe or {})
        if format not in FORMATS:
            raise DataError(f"unknown data.format {format!r}; choose one of {', '.join(FORMATS)}")
        if image_size % 32:
            raise DataError(f"data.image_size={image_size} must be a multiple of 32 (max stride)")
        self.format = format
        self.splits = dict(splits or {})
        self.class_names = list(class_names) if class_names else None
        self.image_size = image_size
        self.augment = dict(augment or {})
        self.rect_eval = rect_eval
        self.cache_images = cache_images
        self.keep_difficult = keep_difficult
        self.sources: dict[str, DetectionSource] = {}

    def source(self, stage: str) -> DetectionSource:
        """The parsed annotations of ``stage`` (train / val / test), read once."""
        if stage in self.sources:
            return self.sources[stage]
        if stage not in self.splits or self.splits[stage] is None:
            raise DataError(
                f"data.splits has no {stage!r} entry (has {sorted(self.splits)}); add one"
            )
        split = self.splits[stage]
        if self.format == "coco":
            if not isinstance(split, list | tuple) or len(split) != 2:
                raise DataError(
                    f"data.splits.{stage} must be [annotation_json, image_folder] for COCO; "
                    f"got {split!r}"
                )
            src = read_coco(self.root / split[0], self.root / split[1], name=stage)
        elif self.format == "yolo":
            src = read_yolo(self.root, split)
        else:
            src = read_voc(
                self.root, split, class_names=self.class_names, keep_difficult=self.keep_difficult
            )
        if self.class_names is None:
            self.class_names = list(src.class_names)
        elif list(src.class_names) != self.class_names and self.format != "voc":
            raise DataError(
                f"data.class_names {self.class_names} differ from the {stage} annotations' "
                f"classes {src.class_names}; remove data.class_names or make them match"
            )
        self.sources[stage] = src
        return src

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        max_epochs = self.trainer.max_epochs if self.trainer is not None else None
        max_epochs = max_epochs or self.recipe.get("epochs")
        for s in stages.get(stage or "fit", ("train", "val")):
            if s not in self.datasets:
                self.datasets[s] = DetectionDataset(
                    self.source(s),
                    img_size=self.image_size,
                    train=s == "train",
                    augment=self.augment,
                    max_epochs=max_epochs,
                    cache_images=self.cache_images,
                )

    def sampler(self, stage: str, dataset: Dataset) -> Sampler:
        # training samples also carry the epoch (mosaic closes in the last epochs)
        return SeededSampler(
            len(dataset), shuffle=stage == "train", seed=self.seed, with_epoch=stage == "train"
        )

    def batch_sampler(self, stage: str, dataset: Dataset) -> Sampler | None:
        if stage == "train":
            return None
        if self.rect_eval:
            batches = dataset.set_rect_shapes(self.eval_batch_size)
        else:
            idx = list(range(len(dataset)))
            batches = [
                idx[i : i + self.eval_batch_size] for i in range(0, len(idx), self.eval_batch_size)
            ]
        return RectBatchSampler(batches)

    def eval_dataset(self, stage: str = "val") -> DetectionDataset:
        if stage not in self.datasets:
            self.setup({"val": "validate"}.get(stage, stage))
        return self.datasets[stage]

    @property
    def meta(self) -> dict[str, Any]:
        src = next(iter(self.sources.values()), None)
        if src is None:
            src = self.source("val" if "val" in self.splits else "train")
        return {
            "num_classes": src.num_classes,
            "class_names": list(src.class_names),
            "category_ids": list(src.category_ids),
            "image_size": self.image_size,
        }
