"""Face-quality data: identity folders (as the recognition family reads them) for training, one
verification set (identity folders with every mated and non-mated pair, or a pairs CSV) for
evaluation, with optional per-image quality labels and 5-point landmarks.

Samples are ``{"image": (3, H, W) in [-1, 1], "identity", "index", "target": quality label
(NaN if none), "level": degradation level (NaN if none), "landmarks": (5, 2) px of the resized
image (NaN if none)}``. No augmentation: flips, blur or colour jitter would change the quality
the label describes.
"""

from __future__ import annotations

import csv
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionzoo.core.io import DataError, read_rgb
from visionzoo.fiqa.scores import path_key
from visionzoo.recognition.align import read_landmarks_csv
from visionzoo.recognition.data import RecognitionDataModule
from visionzoo.recognition.pairs import identity_folders, read_pairs_csv


class QualityFaces(Dataset):
    """Image files with identity ids, quality targets, degradation levels and landmarks."""

    def __init__(
        self,
        files: list[Path],
        identities: list[int],
        transform: Any,
        targets: np.ndarray,
        levels: np.ndarray,
        landmarks: np.ndarray,
        image_size: tuple[int, int],
        keys: list[str],
    ) -> None:
        self.files, self.identities, self.transform = files, identities, transform
        self.targets, self.levels, self.landmarks = targets, levels, landmarks
        self.image_size, self.keys = image_size, keys

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        index = key[0] if isinstance(key, tuple) else key
        image = read_rgb(self.files[index])
        h, w = image.shape[:2]
        scale = np.array([self.image_size[1] / w, self.image_size[0] / h])
        return {
            "image": self.transform(image=image)["image"],
            "identity": self.identities[index],
            "index": index,
            "target": float(self.targets[index]),
            "level": float(self.levels[index]),
            "landmarks": torch.as_tensor(self.landmarks[index] * scale, dtype=torch.float32),
        }

    @staticmethod
    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        out = {k: torch.stack([b[k] for b in batch]) for k in ("image", "landmarks")}
        out["identity"] = torch.tensor([b["identity"] for b in batch], dtype=torch.long)
        out["index"] = torch.tensor([b["index"] for b in batch], dtype=torch.long)
        for k in ("target", "level"):
            out[k] = torch.tensor([b[k] for b in batch], dtype=torch.float32)
        return out


def read_labels_csv(path: Path, root: Path) -> dict[str, tuple[float, float]]:
    """``{path_key: (quality, level)}`` from a CSV with columns ``path`` and ``quality`` (and
    optionally ``level``, a degradation level)."""
    if not path.is_file():
        raise DataError(f"quality labels file {str(path)!r} does not exist; check data.labels")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0] or "quality" not in rows[0]:
        raise DataError(f"{path}:1: expected a header with columns path,quality[,level]")
    out = {}
    for lineno, row in enumerate(rows, 2):
        try:
            level = float(row["level"]) if row.get("level") not in (None, "") else np.nan
            out[path_key(row["path"], root)] = (float(row["quality"]), level)
        except ValueError:
            raise DataError(f"{path}:{lineno}: quality/level must be numbers, got {row}") from None
    return out


class FIQADataModule(RecognitionDataModule):
    """Training identities and one evaluation set for face-quality methods.

    ``train``/``val_sets`` as in ``RecognitionDataModule`` (one val set; a ``folders`` set uses
    every mated and every non-mated pair, which low-FMR thresholds need); ``labels``: a CSV
    ``path,quality[,level]`` under ``root`` (dataset quality labels, e.g. the synthetic set's
    ``degradations.csv``); ``landmarks``: a CSV ``image,x1,y1,...,x5,y5`` (paths relative to
    ``root``) of 5 points in original-image pixels."""

    task = "fiqa"

    def __init__(
        self, *, labels: str | None = None, landmarks: str | None = None, **kw: Any
    ) -> None:
        kw.pop("augment", None)
        super().__init__(augment={"hflip": 0.0}, **kw)
        if len(self.val_specs) > 1:
            raise DataError(
                f"data.val_sets has {len(self.val_specs)} sets; task=fiqa evaluates one"
            )
        self.labels_file, self.landmarks_file = labels, landmarks
        self.files: dict[str, list[Path]] = {}

    def _read_set(self, spec: dict[str, Any]) -> tuple[list, list[tuple], list[int]]:
        fmt, path = spec["format"], self.root / str(spec.get("path", "."))
        if fmt == "folders":
            groups = identity_folders(path, spec.get("identities"))
            files = [f for v in groups.values() for f in v]
            labels = [i for i, v in enumerate(groups.values()) for _ in v]
            pairs = [(a, b, labels[a] == labels[b]) for a, b in combinations(range(len(files)), 2)]
            return files, pairs, labels
        if fmt == "pairs_csv":
            found = read_pairs_csv(path)
            files = list(dict.fromkeys(Path(f) for p in found for f in (p.path1, p.path2)))
            position = {f: i for i, f in enumerate(files)}
            pairs = [(position[Path(p.path1)], position[Path(p.path2)], p.same) for p in found]
            return files, pairs, []
        raise DataError(f"data.val_sets[0].format={fmt!r}: task=fiqa reads folders or pairs_csv")

    def _dataset(self, files: list[Path], identities: list[int]) -> QualityFaces:
        keys = [path_key(f, self.root) for f in files]
        n = len(files)
        targets, levels = np.full(n, np.nan), np.full(n, np.nan)
        if self.labels_file:
            table = read_labels_csv(self.root / self.labels_file, self.root)
            for i, k in enumerate(keys):
                targets[i], levels[i] = table.get(k, (np.nan, np.nan))
        marks = np.full((n, 5, 2), np.nan)
        if self.landmarks_file:
            table = read_landmarks_csv(self.root / self.landmarks_file)
            table = {path_key(k, self.root): v for k, v in table.items()}
            for i, k in enumerate(keys):
                if k in table:
                    marks[i] = table[k]
        return QualityFaces(
            files, identities, self.eval_tf, targets, levels, marks, self.image_size, keys
        )

    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for s in stages.get(stage or "fit", ("train", "val")):
            if s in self.datasets:
                continue
            if s == "train":
                sources, ids, self.identities = self._train_items()
                self._num_classes = len(self.identities)
            else:
                if not self.val_specs:
                    raise DataError("no evaluation set: add one to data.val_sets")
                sources, self.sets, _ = self._val_items()
                # identity = the image's folder (identity-folder layout), also for pairs CSVs
                names = [Path(p).parent.name for p in sources]
                index = {n: i for i, n in enumerate(dict.fromkeys(names))}
                ids = [index[n] for n in names]
            self.datasets[s] = self._dataset([Path(p) for p in sources], ids)

    def batch_sampler(self, stage: str, dataset: Dataset) -> None:
        return None  # quality regression: plain shuffled batches

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size),
            "val_sets": [s["name"] for s in self.val_specs],
        }
