"""The LightningDataModule base every family's data module builds on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from visionzoo.core.io import DataError
from visionzoo.core.sampler import SeededSampler
from visionzoo.core.synthetic import default_cache_dir, ensure_synthetic
from visionzoo.core.utils import trains_on_cuda


class VisionDataModule(pl.LightningDataModule):
    """Loaders with ``SeededSampler`` (exact resume, DDP sharding), worker settings, and the
    synthetic-data hook: when ``synthetic`` is set, ``prepare_data`` writes that dataset to
    ``root`` (default: the cache) before the normal reader reads it."""

    task: str | None = None  # the task family whose datasets this module reads

    def __init__(
        self,
        *,
        root: str | None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | str = "auto",
        persistent_workers: bool = False,
        seed: int = 0,
        synthetic: dict[str, Any] | None = None,
        root_key: str = "data.root",
    ) -> None:
        super().__init__()
        self.synthetic = dict(synthetic) if synthetic else None
        if root is None and self.synthetic is None:
            raise DataError(f"no dataset path given: set {root_key}=<folder with your data>")
        if root is None:
            root = str(default_cache_dir() / "synthetic" / self.synthetic["name"])
        self.root = Path(root).expanduser()
        self.root_key = root_key
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        if pin_memory not in (True, False, "auto"):
            raise DataError(f"data.pin_memory={pin_memory!r}; choose true, false or auto")
        self._pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed = seed
        self.datasets: dict[str, Dataset] = {}
        self._resume_epoch: int | None = None  # from a checkpoint being resumed

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            params = {k: v for k, v in self.synthetic.items() if k != "name"}
            ensure_synthetic(self.synthetic["name"], self.root, **params)
        elif not self.root.exists():
            raise DataError(
                f"dataset folder {str(self.root)!r} does not exist; set {self.root_key} to the "
                "folder that holds your data"
            )

    @property
    def pin_memory(self) -> bool:
        """``data.pin_memory``; ``auto`` pins host batches when the attached trainer runs on
        CUDA (faster, asynchronous copies to the GPU) and never on CPU, where it only costs."""
        if self._pin_memory != "auto":
            return bool(self._pin_memory)
        return trains_on_cuda(self.trainer)

    def loader_options(self) -> dict[str, Any]:
        """Worker settings shared by every loader of the module."""
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }

    def sampler(self, stage: str, dataset: Dataset) -> Sampler:
        """The sample order of ``stage`` (hook): by default ``SeededSampler``, shuffled for
        train only. Override to draw samples differently; keep it a function of (seed, epoch,
        index) and rank-aware, as ``SeededSampler`` is, or resume stops being exact."""
        return SeededSampler(len(dataset), shuffle=stage == "train", seed=self.seed)

    def batch_sampler(self, stage: str, dataset: Dataset) -> Sampler | None:
        """Whole batches for ``stage`` (hook), e.g. rectangular evaluation batches or P×K
        identity batches; ``None`` (default) batches ``sampler``'s order by the batch size."""
        return None

    def loader(self, stage: str) -> DataLoader:
        """A loader for ``stage`` in {train, val, test}; shuffles and drops nothing but train."""
        if stage not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(stage, stage))
        dataset = self.datasets[stage]
        common = {**self.loader_options(), "collate_fn": getattr(dataset, "collate", None)}
        batches = self.batch_sampler(stage, dataset)
        train = stage == "train"
        if batches is not None:
            loader = DataLoader(dataset, batch_sampler=batches, **common)
        else:
            loader = DataLoader(
                dataset,
                batch_size=self.batch_size if train else self.eval_batch_size,
                sampler=self.sampler(stage, dataset),
                drop_last=train and len(dataset) > self.batch_size,
                **common,
            )
        if train:
            # Lightning creates the training iterator before its first set_epoch call, and
            # loader workers draw indices as soon as it exists: a resumed run would replay
            # epoch 0's order. Start the samplers at the epoch the run continues from.
            trainer = self.trainer
            epoch = max(self._resume_epoch or 0, trainer.current_epoch if trainer else 0)
            for sampler in {id(s): s for s in (loader.sampler, loader.batch_sampler)}.values():
                for part in (sampler, getattr(sampler, "sampler", None)):
                    if hasattr(part, "set_epoch"):
                        part.set_epoch(epoch)
        return loader

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the epoch a run resumed from this checkpoint trains next."""
        trainer = self.trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        finished = done >= trainer.num_training_batches
        return {"next_epoch": trainer.current_epoch + int(finished)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restored before the training loader is built (see ``loader``)."""
        self._resume_epoch = state_dict.get("next_epoch")

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self._resume_epoch = None

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    @property
    def meta(self) -> dict[str, Any]:
        """Plain data stored in checkpoints (class names etc.) so eval/predict need only them."""
        return {}
