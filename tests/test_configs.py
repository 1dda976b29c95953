"""Every config file composes, and the task → default model/data wiring holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose
from hydra.utils import get_class
from omegaconf import OmegaConf

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())


def group_options() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_config_file_composes(group: str, option: str, tmp_path: Path) -> None:
    overrides = [f"{group}={option}"]
    if group == "data":
        if OmegaConf.is_missing(compose(overrides, tmp_path).data, "root"):
            overrides.append(f"data.root={tmp_path}")
        target = compose(overrides, tmp_path).data._target_
        overrides.append(f"task={get_class(target).task}")  # the family the data module reads
    if group == "model":
        overrides.append(f"task={_task_of(option)}")
    if group == "loss":  # the loss group configures the per-pixel losses of segmentation
        overrides.append("task=segmentation")
    cfg = compose(overrides, tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["task"]["name"]
    assert resolved["model"]["name"]


def _task_of(model: str) -> str:
    from visionzoo.registry import model_tasks

    return model_tasks(model)[0]


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("eval", ["ckpt_path=x"]),
        ("predict", ["ckpt_path=x.ckpt", "input=a", "output=b"]),
        ("export", ["ckpt_path=x.ckpt", "output=b.onnx"]),
        ("check_data", ["data=bccd"]),
    ],
)
def test_entry_configs_compose(name: str, overrides: list[str], tmp_path: Path) -> None:
    cfg = compose(overrides, tmp_path, config_name=name)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_task_picks_its_default_model_and_data(tmp_path: Path) -> None:
    cfg = compose(["task=segmentation"], tmp_path)
    assert cfg.model.name == "unet"
    assert cfg.data.synthetic.name == "segmentation_shapes"
    cfg = compose(["task=segmentation", "model=fcn"], tmp_path)
    assert cfg.model.name == "fcn", "a command-line model= must win over the task's default"


def _stems(group: str) -> list[str]:
    return [p.stem for p in sorted((CONFIGS / group).glob("*.yaml"))]


@pytest.mark.parametrize("task", _stems("task"))
@pytest.mark.parametrize("optimizer", _stems("optimizer"))
def test_every_task_builds_every_optimizer(task: str, optimizer: str, tmp_path: Path) -> None:
    """A task's optimizer settings must suit every optimizer (e.g. no Adam betas for SGD)."""
    import torch

    from visionzoo.core.utils import call_spec

    cfg = compose([f"task={task}", f"optimizer={optimizer}"], tmp_path)
    spec = OmegaConf.to_container(cfg.optimizer, resolve=True)
    call_spec(spec, [torch.nn.Parameter(torch.zeros(1))])


@pytest.mark.parametrize("name", _stems("experiment"))
def test_every_experiment_builds_its_optimizer(name: str, tmp_path: Path) -> None:
    import torch

    from visionzoo.core.utils import call_spec

    cfg = compose([f"experiment={name}"], tmp_path)
    call_spec(
        OmegaConf.to_container(cfg.optimizer, resolve=True), [torch.nn.Parameter(torch.zeros(1))]
    )
