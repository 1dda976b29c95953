"""The shared task-module and data-module contract: every trainable parameter of the module is
optimised, channels-last covers every image of a multi-image batch, and a family can supply its
own sampler without copying the loader code."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset, Sampler

from visionzoo.core.datamodule import VisionDataModule
from visionzoo.core.module import VisionModule
from visionzoo.registry import register_model

SGD = {"_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 0.0}


@register_model(task="core_test", name="core_test_linear")
def linear(features: int = 4) -> nn.Module:
    return nn.Linear(features, features)


class HeadModule(VisionModule):
    """A module that holds a head of its own next to the network (as margin heads do)."""

    image_keys = ("reference", "distorted")

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.head = nn.Linear(4, 3)
        self.centres = nn.Parameter(torch.zeros(3, 4))


def make_module() -> HeadModule:
    return HeadModule(
        model={"name": "core_test_linear"}, optimizer=SGD, monitor="val/acc", task_name="x"
    )


def test_optimizer_covers_parameters_held_by_the_module() -> None:
    torch.manual_seed(0)
    module = make_module()
    optimizer = module.configure_optimizers()["optimizer"]
    head_before = module.head.weight.detach().clone()
    centres_before = module.centres.detach().clone()
    x = torch.randn(8, 4)
    emb = module.model(x)
    loss = module.head(emb).logsumexp(1).mean() + ((emb[:, None] - module.centres) ** 2).mean()
    loss.backward()
    optimizer.step()
    assert not torch.equal(module.head.weight, head_before)
    assert not torch.equal(module.centres, centres_before)
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in module.parameters()}


def test_channels_last_applies_to_every_image_key() -> None:
    module = make_module()
    module._channels_last_on = True  # what setup() decides on a CUDA trainer
    batch = {
        "reference": torch.rand(2, 3, 8, 8),
        "distorted": torch.rand(2, 3, 8, 8),
        "mos": torch.rand(2),
    }
    out = module.on_after_batch_transfer(batch, 0)
    for key in ("reference", "distorted"):
        assert out[key].is_contiguous(memory_format=torch.channels_last)
        assert not out[key].is_contiguous()  # really NHWC, not a no-op on a 1×1 image
    assert torch.equal(out["mos"], batch["mos"])


class Numbers(Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, key: int | tuple[int, int]) -> int:
        return key[0] if isinstance(key, tuple) else key


class Blocks(Sampler[int]):
    """P×K-style order: the indices grouped in blocks of 4, last block first."""

    def __iter__(self):
        yield from [8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]

    def __len__(self) -> int:
        return 12


class BlockData(VisionDataModule):
    def setup(self, stage: str | None = None) -> None:
        self.datasets = {"train": Numbers(), "val": Numbers()}

    def sampler(self, stage: str, dataset: Dataset) -> Sampler:
        return Blocks() if stage == "train" else super().sampler(stage, dataset)


def test_a_family_sampler_drives_the_shared_loader(tmp_path) -> None:
    data = BlockData(root=str(tmp_path), batch_size=4)
    train = [b.tolist() for b in data.train_dataloader()]
    assert train == [[8, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 3]]
    assert [b.tolist() for b in data.val_dataloader()][0] == [0, 1, 2, 3]  # default: in order
