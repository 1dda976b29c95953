"""Face recognition data: identity folders or insightface RecordIO for training; verification
sets (identity folders, pairs CSV, LFW ``pairs.txt``, insightface ``.bin``) for validation.

Training samples are ``{"image": (3, H, W), "label": identity}``. Validation images of every
set are concatenated into one dataset (each image once, even when it is in many pairs); a set
is its pairs as index arrays into that list, plus identity labels where the set has them (for
rank-1 identification and retrieval metrics).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import Dataset, Sampler

from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.io import DataError, read_rgb
from visionzoo.core.transforms import seed_pipeline
from visionzoo.recognition.align import align_face, read_landmarks_csv
from visionzoo.recognition.pairs import (
    balanced_pairs,
    identity_folders,
    read_lfw_pairs,
    read_pairs_csv,
)
from visionzoo.recognition.pk_sampler import PKBatchSampler
from visionzoo.recognition.recordio import RecordReader
from visionzoo.recognition.verification_bin import read_bin

TRAIN_FORMATS = ("folders", "recordio")
VAL_FORMATS = ("folders", "pairs_csv", "lfw", "bin")
# insightface normalises faces to [-1, 1]
FACE_MEAN = (0.5, 0.5, 0.5)
FACE_STD = (0.5, 0.5, 0.5)

# An image source: a file path, JPEG bytes (a .bin set) or a RecordIO key (with its reader).
Source = Path | bytes | tuple[RecordReader, int]


def decode(source: Source) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image source."""
    if isinstance(source, Path):
        return read_rgb(source)
    if isinstance(source, tuple):
        reader, key = source
        source = reader.read(key)[2]
    try:
        return np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    except OSError as err:
        raise DataError(f"cannot decode an image stored in the dataset ({err})") from err


def face_transform(
    *,
    train: bool,
    image_size: tuple[int, int],
    hflip: float = 0.5,
    scale: tuple[float, float] = (1.0, 1.0),
    shift: float = 0.0,
    rotate: float = 0.0,
    color: float = 0.0,
    mean: tuple[float, ...] = FACE_MEAN,
    std: tuple[float, ...] = FACE_STD,
) -> A.Compose:
    """Resize to ``image_size`` (H, W); in training also flip, small affine jitter (``scale``
    range, ``shift`` fraction, ``rotate`` degrees) and brightness/contrast (``color``)."""
    ops: list[A.BasicTransform] = [A.Resize(*image_size)]
    if train:
        if hflip:
            ops.append(A.HorizontalFlip(p=hflip))
        if rotate or shift or tuple(scale) != (1.0, 1.0):
            ops.append(
                A.Affine(
                    scale=tuple(scale),
                    translate_percent=(-shift, shift),
                    rotate=(-rotate, rotate),
                    border_mode=0,
                    p=1.0,
                )
            )
        if color:
            ops.append(A.RandomBrightnessContrast(brightness_limit=color, contrast_limit=color))
    ops += [A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(ops, seed=0)


class FaceImages(Dataset):
    """Image sources (with identity labels, or -1) → ``{"image", "label", "index"}``.

    Keys are indices or ``(index, seed)`` from the project's samplers; the seed fixes that
    sample's augmentation so resumed runs repeat it. ``landmarks`` (per source index, (5, 2))
    aligns a face to the ArcFace template before the transform."""

    def __init__(
        self,
        sources: list[Source],
        labels: list[int],
        transform: A.Compose,
        landmarks: dict[int, np.ndarray] | None = None,
    ) -> None:
        self.sources = sources
        self.labels = labels
        self.transform = transform
        self.landmarks = landmarks or {}

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        index, seed = (key[0], key[1]) if isinstance(key, tuple) else (key, key)
        image = decode(self.sources[index])
        if index in self.landmarks:
            image = align_face(image, self.landmarks[index])
        seed_pipeline(self.transform, seed)
        return {
            "image": self.transform(image=image)["image"],
            "label": self.labels[index],
            "index": index,
        }

    @staticmethod
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "image": torch.stack([b["image"] for b in batch]),
            "label": torch.tensor([b["label"] for b in batch], dtype=torch.long),
            "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
        }


@dataclass
class VerificationSet:
    """One validation set: its pairs as indices into the shared validation image list, and the
    identity label of each of its images where known (else empty)."""

    name: str
    first: np.ndarray  # (P,) index of each pair's first image
    second: np.ndarray  # (P,) index of each pair's second image
    same: np.ndarray  # (P,) bool
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # labelled images
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _relative(path: Path, root: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


class RecognitionDataModule(VisionDataModule):
    """Identity-labelled training images and verification sets.

    ``train``: ``{format: folders|recordio, path, identities}`` — identity folders under
    ``root/path`` (``identities``: a slice of them) or insightface ``train.rec`` (+ ``.idx``).
    ``val_sets``: a list of ``{name, format, path, ...}`` with format ``folders`` (balanced
    pairs drawn from identity folders: ``identities``, ``num_same`` (null = every
    same-identity pair), ``seed``), ``pairs_csv`` (``path1,path2,same``), ``lfw`` (``pairs.txt``
    with ``images``: the image root) or ``bin`` (insightface verification file). Any set may
    give ``landmarks``: a CSV of 5 points per image to align faces to the ArcFace template.
    ``sampler``: ``auto`` (P×K identity batches for pair-based losses, shuffled images
    otherwise), ``pk`` or ``random``; ``k`` images per identity in a P×K batch. ``recipe``:
    ``{epochs}``, the training length ``task/recognition.yaml`` uses unless
    ``trainer.max_epochs`` is given.
    """

    task = "recognition"

    def __init__(
        self,
        *,
        root: str | None = None,
        train: dict[str, Any] | None = None,
        val_sets: list[dict[str, Any]] | None = None,
        image_size: list[int] | tuple[int, int] = (112, 112),
        augment: dict[str, Any] | None = None,
        sampler: str = "auto",
        k: int = 4,
        recipe: dict[str, Any] | None = None,
        **loader_kw: Any,
    ) -> None:
        super().__init__(root=root, **loader_kw)
        self.recipe = dict(recipe or {})  # the dataset's training length (read by the config)
        if sampler not in ("auto", "pk", "random"):
            raise DataError(f"data.sampler={sampler!r}; choose auto, pk or random")
        if k < 2:
            raise DataError(f"data.k={k}: a P×K batch needs at least 2 images per identity")
        self.train_spec = dict(train or {"format": "folders", "path": "train"})
        if self.train_spec.get("format", "folders") not in TRAIN_FORMATS:
            raise DataError(
                f"data.train.format={self.train_spec['format']!r}; choose one of "
                f"{', '.join(TRAIN_FORMATS)}"
            )
        self.val_specs = [dict(s) for s in (val_sets or [])]
        for i, spec in enumerate(self.val_specs):
            if spec.get("format") not in VAL_FORMATS:
                raise DataError(
                    f"data.val_sets[{i}].format={spec.get('format')!r}; choose one of "
                    f"{', '.join(VAL_FORMATS)}"
                )
            spec.setdefault("name", Path(str(spec.get("path", f"set{i}"))).stem)
        self.image_size = tuple(image_size)
        self.sampler_mode = sampler
        self.k = k
        self.train_tf = face_transform(train=True, image_size=self.image_size, **(augment or {}))
        self.eval_tf = face_transform(train=False, image_size=self.image_size)
        self.identities: list[str] = []
        self.sets: list[VerificationSet] = []
        self._num_classes: int | None = None

    # ------------------------------------------------------------------------------- train
    def _train_items(self) -> tuple[list[Source], list[int], list[str]]:
        spec = self.train_spec
        path = self.root / str(spec.get("path", "train"))
        if spec.get("format", "folders") == "recordio":
            rec = path if path.suffix == ".rec" else path / "train.rec"
            reader = RecordReader(rec)
            items = reader.images()
            names = sorted({int(label) for _, label in items})
            index = {label: i for i, label in enumerate(names)}
            sources: list[Source] = [(reader, key) for key, _ in items]
            return sources, [index[int(label)] for _, label in items], [str(n) for n in names]
        groups = identity_folders(path, spec.get("identities"))
        sources, labels = [], []
        for i, files in enumerate(groups.values()):
            sources += files
            labels += [i] * len(files)
        return sources, labels, list(groups)

    @property
    def num_classes(self) -> int:
        """Training identities (read once; RecordIO counts its labels)."""
        if self._num_classes is None:
            self.prepare_data()
            _, _, self.identities = self._train_items()
            self._num_classes = len(self.identities)
        return self._num_classes

    # --------------------------------------------------------------------------------- val
    def _val_items(self) -> tuple[list[Source], list[VerificationSet], dict[int, np.ndarray]]:
        sources: list[Source] = []
        sets: list[VerificationSet] = []
        landmarks: dict[int, np.ndarray] = {}
        for spec in self.val_specs:
            offset = len(sources)
            images, pairs, labels = self._read_set(spec)
            if spec.get("landmarks"):
                marks = read_landmarks_csv(self.root / spec["landmarks"])
                for i, src in enumerate(images):
                    rel = _relative(src, self.root) if isinstance(src, Path) else None
                    if rel in marks:
                        landmarks[offset + i] = marks[rel]
            sources += images
            index = np.array([(a, b) for a, b, _ in pairs], np.int64).reshape(-1, 2) + offset
            same = np.array([s for _, _, s in pairs], bool)
            labelled = np.arange(offset, offset + len(images)) if labels else np.zeros(0, int)
            sets.append(
                VerificationSet(
                    spec["name"], index[:, 0], index[:, 1], same, labelled, np.array(labels, int)
                )
            )
        return sources, sets, landmarks

    def _read_set(self, spec: dict[str, Any]) -> tuple[list[Source], list[tuple], list[int]]:
        """(image sources, pairs as (i, j, same) indices into them, labels or [])."""
        fmt, path = spec["format"], self.root / str(spec.get("path", "."))
        if fmt == "bin":  # consecutive images form the pairs
            blobs, same = read_bin(path)
            return list(blobs), [(2 * i, 2 * i + 1, bool(s)) for i, s in enumerate(same)], []
        labels: list[int] = []
        if fmt == "folders":
            groups = identity_folders(path, spec.get("identities"))
            found = balanced_pairs(
                {k: [str(f) for f in v] for k, v in groups.items()},
                num_same=spec.get("num_same"),
                seed=int(spec.get("seed", 0)),
            )
            files = [Path(f) for v in groups.values() for f in v]
            labels = [i for i, v in enumerate(groups.values()) for _ in v]
        else:
            if fmt == "lfw":
                found = read_lfw_pairs(path, self.root / str(spec.get("images", "lfw")))
            else:
                found = read_pairs_csv(path)
            files = list(dict.fromkeys(Path(f) for p in found for f in (p.path1, p.path2)))
        position = {f: i for i, f in enumerate(files)}
        pairs = [(position[Path(p.path1)], position[Path(p.path2)], bool(p.same)) for p in found]
        return list(files), pairs, labels

    # ------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for s in stages.get(stage or "fit", ("train", "val")):
            if s in self.datasets:
                continue
            if s == "train":
                sources, labels, self.identities = self._train_items()
                self._num_classes = len(self.identities)
                self.datasets[s] = FaceImages(sources, labels, self.train_tf)
            else:
                if not self.val_specs:
                    raise DataError("no verification set: add one to data.val_sets")
                sources, self.sets, marks = self._val_items()
                self.datasets[s] = FaceImages(sources, [-1] * len(sources), self.eval_tf, marks)

    def batch_sampler(self, stage: str, dataset: Dataset) -> Sampler | None:
        if stage != "train":
            return None
        mode = self.sampler_mode
        if mode == "auto":
            module = self.trainer.lightning_module if self.trainer else None
            mode = (
                "pk" if getattr(getattr(module, "model", None), "pair_based", False) else "random"
            )
        if mode != "pk":
            return None
        p = max(self.batch_size // self.k, 2)
        return PKBatchSampler(dataset.labels, p=p, k=self.k, seed=self.seed)

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "image_size": list(self.image_size),
            "val_sets": [s["name"] for s in self.val_specs],
        }
