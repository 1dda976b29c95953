"""The family contract, checked for every registered family and for a plug-in defined here.

``test_family_contract`` runs each family through what the CLI relies on (compose, one training
step, validation, predicting files, a weights-only checkpoint round trip): a new family is
tested by registering it and, if its defaults are slow, adding tiny overrides to ``TINY``.
The ``toy`` family (``tests/toy_family``) is registered from outside the package and driven
through ``train.py`` / ``eval.py`` / ``predict.py`` / ``check_data.py`` / ``export.py`` to show
that adding a family needs no change to a shared file.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_DET, TINY_REC, TINY_SEG, compose, run_cli
from omegaconf import OmegaConf
from PIL import Image

from visionzoo import registry
from visionzoo.cli import build_run, load_checkpoint_module
from visionzoo.cli.checks import config_dirs
from visionzoo.core.module import RUNTIME_KEYS
from visionzoo.family import PLUGINS_ENV, Family

TOY = "toy"  # the plug-in family of tests/toy_family
TOY_PLUGIN = "toy_family"

# Per family, overrides that make a run take seconds; a family without an entry runs as is.
TINY = {
    "aesthetics": [
        "task=aesthetics",
        "data.synthetic.num_train=16",
        "data.synthetic.num_val=8",
        "data.synthetic.size=32",
        "data.image_size=32",
        "data.crop_size=16",
        "data.batch_size=8",
        "callbacks.progress=none",
        "task.plots=false",
    ],
    "detection": [*TINY_DET, "task.plots=false"],  # noqa: E501
    "iqa": [
        "task=iqa",
        "data.synthetic.num_references=5",
        "data.synthetic.size=48",
        "data.crop_size=32",
        "data.batch_size=8",
        "callbacks.progress=none",
        "task.plots=false",
    ],  # noqa: E501
    "fiqa": [
        "task=fiqa",
        "data.synthetic.num_train_ids=4",
        "data.synthetic.num_val_ids=3",
        "data.synthetic.images_per_id=4",
        "data.synthetic.clean_per_id=1",
        "data.synthetic.size=32",
        "data.image_size=[32,32]",
        "model.backbone=test_resnet",
        "callbacks.progress=none",
        "task.plots=false",
    ],  # noqa: E501
    "recognition": [*TINY_REC, "task.plots=false"],  # noqa: E501
    "segmentation": [*TINY_SEG, "task.plots=false"],  # noqa: E501
    TOY: [f"task={TOY}", "callbacks.progress=none"],
}
FAMILIES = sorted({*registry.list_families(), TOY})


@pytest.fixture
def toy_plugin() -> Iterator[None]:
    """Import the toy plug-in for one test, then restore the registries as they were, so the
    rest of the suite sees the package's own families only."""
    tables = (registry._FAMILIES, registry._MODELS, registry._LOSSES, registry._GENERATORS)
    saved = [dict(t) for t in tables]
    importlib.import_module(TOY_PLUGIN)
    try:
        yield
    finally:
        for table, before in zip(tables, saved, strict=True):
            table.clear()
            table.update(before)
        for name in [m for m in sys.modules if m.split(".")[0] == TOY_PLUGIN]:
            del sys.modules[name]


@pytest.fixture
def family(request: pytest.FixtureRequest) -> Family:
    """The registered family named by the parameter (the toy one registered on demand)."""
    if request.param == TOY:
        request.getfixturevalue("toy_plugin")
    return registry.get_family(request.param)


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """Random RGB PNGs of the given (height, width); returns their paths."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"image_{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def task_config(name: str) -> Path:
    """``task/<name>.yaml`` in the first config folder that has it."""
    found = [d / "task" / f"{name}.yaml" for d in config_dirs()]
    return next(p for p in found if p.is_file())


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_family_contract(family: Family, tmp_path: Path) -> None:
    overrides = TINY.get(family.name, [f"task={family.name}"])
    cfg = compose([*overrides, "trainer.fast_dev_run=true", "logger=none"], tmp_path)
    trainer, module, datamodule = build_run(cfg, tmp_path)
    assert isinstance(module, family.module)
    trainer.fit(module, datamodule=datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])

    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    assert cfg.task.monitor in metrics, sorted(metrics)

    if family.predict:
        files = write_images(tmp_path / "images", [(48, 64), (40, 40)])
        out_dir = tmp_path / "pred"
        out_dir.mkdir()  # predict.py creates it before asking the module
        records = module.eval().predict_files(files, out_dir, datamodule)
        assert isinstance(records, list) and json.loads(json.dumps(records)) == records
        named = {Path(r.get("file") or r["file_name"]).name for r in records}
        assert named <= {f.name for f in files}

    path = tmp_path / "contract.ckpt"
    trainer.save_checkpoint(path)
    trainer.strategy.checkpoint_io.teardown()  # joins the background writer (as fit's end does)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["task_name"] == family.name
    reloaded = load_checkpoint_module(str(path))
    assert type(reloaded) is family.module
    before, after = module.state_dict(), reloaded.state_dict()
    assert list(before) == list(after)
    for key, value in before.items():
        assert torch.equal(value.cpu(), after[key]), key


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_family_defaults_are_its_task_config(family: Family, tmp_path: Path) -> None:
    """``Family.default_model`` / ``default_data`` are what ``task/<name>.yaml`` selects, and
    every model of the family has a model config with the runtime keys."""
    raw = OmegaConf.to_container(OmegaConf.load(task_config(family.name)))
    chosen = {
        key.removeprefix("override /"): value
        for entry in raw["defaults"]
        if isinstance(entry, dict)
        for key, value in entry.items()
    }
    assert (chosen["model"], chosen["data"]) == (family.default_model, family.default_data)
    assert raw["task"]["name"] == family.name
    cfg = compose([f"task={family.name}"], tmp_path)
    assert cfg.model.name == family.default_model
    for model in family.models():
        found = [d / "model" / f"{model}.yaml" for d in config_dirs()]
        spec = OmegaConf.load(next(p for p in found if p.is_file()))
        assert spec.name == model and set(RUNTIME_KEYS) <= set(spec), model


# ------------------------------------------------------------------ the toy plug-in, by CLI
@pytest.fixture(scope="module")
def toy_cli(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every CLI path of the toy family, run as subprocesses with the plug-in named in
    ``$VISIONZOO_PLUGINS``: those needing no checkpoint in parallel with training, those that
    read its checkpoint once it is written. Returns the finished processes and their folders."""
    tmp = tmp_path_factory.mktemp("toy_cli")
    path = [str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {PLUGINS_ENV: TOY_PLUGIN, "PYTHONPATH": os.pathsep.join(path)}
    metric_env = {**env, "VISIONZOO_CACHE": str(tmp / "cache")}  # no race on the data cache
    run, last = tmp / "train", tmp / "train" / "checkpoints" / "last.ckpt"
    first = {
        "train": ("train.py", [*TINY[TOY], "trainer.max_epochs=2", f"hydra.run.dir={run}"], env),
        "eval_metric_only": (
            "eval.py",
            [f"task={TOY}", "model=toy_brightness", f"hydra.run.dir={tmp / 'eval_metric'}"],
            metric_env,
        ),
        "eval_no_ckpt": ("eval.py", [f"task={TOY}"], env),
        "check_data": ("check_data.py", [f"task={TOY}"], env),
    }
    images = write_images(tmp / "input", [(32, 32), (20, 28)])
    then = {
        "eval": ("eval.py", [f"ckpt_path={last}", f"hydra.run.dir={tmp / 'eval'}"], env),
        "predict": (
            "predict.py",
            [f"ckpt_path={last}", f"input={images[0].parent}", f"output={tmp / 'pred'}"],
            env,
        ),
        "export": ("export.py", [f"ckpt_path={last}", f"output={tmp / 'toy.onnx'}"], env),
    }
    with ThreadPoolExecutor(max_workers=len(first) + len(then)) as pool:
        jobs = {k: pool.submit(run_cli, s, *a, env=e) for k, (s, a, e) in first.items()}
        jobs["train"].result()  # the checkpoint readers start as soon as training ends
        jobs.update({k: pool.submit(run_cli, s, *a, env=e) for k, (s, a, e) in then.items()})
        done = {k: job.result() for k, job in jobs.items()}
    return {"proc": done, "tmp": tmp, "run": run, "last": last}


def ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def one_line_error(proc) -> str:
    """The single ``error: ...`` line a user mistake prints (status 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def test_toy_train_writes_checkpoints_and_learns(toy_cli: dict) -> None:
    ok(toy_cli["proc"]["train"])
    result = json.loads((toy_cli["run"] / "metrics.json").read_text())
    assert result["metrics"]["val/acc"] > 0.75, result  # chance is 0.5
    assert Path(result["paths"]["best checkpoint"]).is_file()
    ckpt = torch.load(toy_cli["last"], map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["task_name"] == TOY
    assert ckpt["hyper_parameters"]["data_meta"]["class_names"] == ["dark", "light"]


def test_toy_eval_reproduces_the_last_validation(toy_cli: dict) -> None:
    ok(toy_cli["proc"]["eval"])
    trained = json.loads((toy_cli["run"] / "metrics.json").read_text())["metrics"]
    evaluated = json.loads((toy_cli["tmp"] / "eval" / "eval_metrics.json").read_text())
    for key in ("val/acc", "val/loss"):
        assert evaluated["metrics"][key] == pytest.approx(trained[key], abs=1e-6), key


def test_toy_predict_writes_one_record_per_file(toy_cli: dict) -> None:
    ok(toy_cli["proc"]["predict"])
    records = json.loads((toy_cli["tmp"] / "pred" / "predictions.json").read_text())
    assert [Path(r["file"]).name for r in records] == ["image_0.png", "image_1.png"]
    for r in records:
        assert r["class_name"] in ("dark", "light")
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_toy_metric_only_model_evaluates_without_a_checkpoint(toy_cli: dict) -> None:
    ok(toy_cli["proc"]["eval_metric_only"])
    out = json.loads((toy_cli["tmp"] / "eval_metric" / "eval_metrics.json").read_text())
    assert out["checkpoint"] is None and out["model"] == "toy_brightness"
    assert out["metrics"]["val/acc"] == 1.0  # the two classes' grey levels do not overlap


def test_toy_trainable_model_without_a_checkpoint_is_refused(toy_cli: dict) -> None:
    line = one_line_error(toy_cli["proc"]["eval_no_ckpt"])
    assert "'toy_cnn' has learnt weights: give ckpt_path=" in line and "toy_brightness" in line


@pytest.mark.parametrize("script", ["check_data", "export"])
def test_toy_unsupported_entry_points_say_so(toy_cli: dict, script: str) -> None:
    """The toy family has neither a dataset report nor an ONNX export."""
    line = one_line_error(toy_cli["proc"][script])
    assert line == f"error: {script}.py is not supported for task {TOY!r}"


@pytest.mark.parametrize("family", FAMILIES, indirect=True)
def test_capabilities_follow_what_the_family_registered(family: Family) -> None:
    caps = family.capabilities
    assert caps["export"] == (family.export is not None)
    assert caps["check_data"] == (family.check_data is not None)
    assert caps["benchmark"] == (family.bench_module() is not None)
    assert caps["eval_without_checkpoint"] == any(
        not registry.model_info(m).trainable for m in registry.list_models(family.name)
    )
    expected = {
        "aesthetics": (False, False, False),
        "detection": (True, True, False),
        "iqa": (False, False, True),
        "fiqa": (False, False, True),
        "recognition": (True, False, True),
        "segmentation": (False, True, False),
    }
    expected[TOY] = (False, False, True)
    export, check, metric_only = expected[family.name]
    assert (caps["export"], caps["check_data"], caps["eval_without_checkpoint"]) == (
        export,
        check,
        metric_only,
    )
