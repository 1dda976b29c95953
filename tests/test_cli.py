"""End-to-end behaviour of train.py / eval.py / predict.py and the run machinery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CPU_DDP, TINY_SEG, compose, fit_run, killed_run, run_cli, run_entry
from PIL import Image

from visionzoo.cli import (
    UserError,
    build_run,
    check_model_task,
    eval_entry,
    predict_entry,
    train_entry,
)
from visionzoo.registry import _MODELS, list_models, register_model


def _train(tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "train.py", *TINY_SEG, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}", *extra
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_train_eval_predict_end_to_end(tmp_path: Path) -> None:
    run_dir, result = _train(tmp_path)
    assert "val/miou" in result["metrics"] and "val/miou_best" in result["metrics"]
    best = Path(result["paths"]["best checkpoint"])
    assert best.is_file() and (run_dir / "config_resolved.yaml").is_file()
    assert (Path(result["paths"]["logs"]) / "metrics.csv").is_file()
    assert list((Path(result["paths"]["logs"]) / "plots").glob("val_iou_epoch*.png"))

    # Self-describing and safe to load: no pickled objects.
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["model"]["name"] == "unet" and hp["task_name"] == "segmentation"
    assert hp["data_meta"]["class_names"] == ["background", "circle", "rectangle", "triangle"]

    # eval and predict in-process (the script files themselves run as subprocesses in the toy
    # family's end-to-end test): each process start costs seconds of imports
    code, err = run_entry(eval_entry, f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert code == 0, err[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["metrics"]
    # Same weights, same data, same metric code: eval reproduces the training-time validation.
    assert evaluated["val/miou"] == pytest.approx(hp and result["metrics"]["val/miou"], abs=1e-6)

    images = Path(json.loads((run_dir / "metrics.json").read_text())["paths"]["resolved config"])
    cache = Path(_data_root(images))
    out = tmp_path / "pred"
    code, err = run_entry(
        predict_entry, f"ckpt_path={best}", f"input={cache / 'images'}", f"output={out}"
    )
    assert code == 0, err[-3000:]
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) == 24
    first = records[0]
    mask = np.asarray(Image.open(first["mask"]))
    src = Image.open(first["file"])
    assert mask.shape == (src.height, src.width) and mask.max() < 4
    assert Image.open(first["overlay"]).size == src.size
    assert sum(first["class_fraction"].values()) == pytest.approx(1.0)


def _data_root(resolved_config: Path) -> str:
    import yaml

    cfg = yaml.safe_load(resolved_config.read_text())
    return cfg["data"]["root"] or str(
        Path(cfg["paths"]["output_root"]).parent / "cache" / "synthetic" / "segmentation_shapes"
    )


@pytest.mark.parametrize("model", list_models("segmentation"))
def test_fast_dev_run_every_model(model: str, tmp_path: Path) -> None:
    cfg = compose(
        [f"model={model}", *TINY_SEG, "trainer.fast_dev_run=true", "logger=none"], tmp_path
    )
    trainer, module, datamodule = build_run(cfg, tmp_path)
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer.fit(module, datamodule=datamodule)
    changed = any(
        not torch.equal(a, b) for a, b in zip(before, module.model.parameters(), strict=True)
    )
    assert changed, "one optimizer step must change the weights"
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_resume_continues_the_exact_schedule(tmp_path: Path) -> None:
    """Killed with SIGKILL inside epoch 3 of 4 and resumed from last.ckpt: the same weights as
    one uninterrupted 4-epoch run (CPU, fixed seed, the default 2 persistent loader workers)."""
    overrides = [
        *TINY_SEG,
        "trainer.max_epochs=4",
        "logger=none",
        "task.plots=false",
        "scheduler.warmup_epochs=1",
        "data.num_workers=2",  # the default loader: workers prefetch at iterator creation
    ]

    def fit(run_dir: Path, stop_after: int | None = None, ckpt: str | None = None):
        return fit_run(overrides, run_dir, stop_after, ckpt)

    _, full = fit(tmp_path / "full")
    last = killed_run(overrides, tmp_path / "part", epoch=2)
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1  # the end of epoch 2 (0-based 1), written before the kill
    _, resumed = fit(tmp_path / "part2", ckpt=str(last))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert resumed.best == pytest.approx(full.best, abs=1e-6)


def test_sweep_writes_one_folder_per_job_and_a_summary(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        "-m",
        "model=unet,fcn",
        *TINY_SEG,
        "data.batch_size=4,0",  # the batch-size-0 jobs fail; the sweep goes on
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
    assert [p.name for p in jobs] == ["0", "2"]
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "failed"]
    assert [r["error"] for r in rows if r["status"] == "failed"] == [
        "data.batch_size=0: expected a whole number ≥ 1"
    ] * 2
    assert any("model=unet" in r["overrides"] for r in rows if r["status"] == "ok")
    assert any("model=fcn" in r["overrides"] for r in rows if r["status"] == "ok")
    assert all("val/miou" in r["metrics"] for r in rows if r["status"] == "ok")
    assert (sweep / "summary.csv").read_text().count("\n") == 5


def test_run_folders_are_unique_within_one_second(tmp_path: Path) -> None:
    """Two runs composed in the same second get different run folders (random suffix)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from visionzoo.cli import CONFIG_DIR

    dirs = []
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for _ in range(5):
            cfg = hydra_compose("train", return_hydra_config=True)
            run_dir = OmegaConf.select(cfg, "hydra.run.dir")
            assert run_dir == OmegaConf.select(cfg, "hydra.run.dir"), "stable within one run"
            dirs.append(run_dir)
    assert len(set(dirs)) == 5


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path: Path) -> None:
    run_dir, result = _train(tmp_path, *CPU_DDP, "logger=none")
    ckpt = torch.load(result["paths"]["last checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] > 0
    assert len(list((run_dir / "checkpoints").glob("*.ckpt"))) == 2  # best + last, written once


# ----------------------------------------------------------------------------- bad input
def test_model_of_another_task_is_refused(tmp_path: Path) -> None:
    register_model("iqa", "zz_test_iqa_model")(lambda **kw: torch.nn.Identity())
    try:
        cfg = compose(["task=segmentation"], tmp_path)
        cfg.model.name = "zz_test_iqa_model"
        with pytest.raises(UserError) as err:
            check_model_task(cfg)
        assert "not a segmentation model" in str(err.value) and "unet" in str(err.value)
    finally:
        _MODELS.pop("zz_test_iqa_model")


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_every_logger_writes_offline(logger: str, tmp_path: Path) -> None:
    """Each logger preset works with no network (W&B in offline mode)."""
    cfg = compose(
        [
            *TINY_SEG,
            f"logger={logger}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "task.plots=false",
        ],
        tmp_path,
    )
    trainer, module, datamodule = build_run(cfg, tmp_path)
    trainer.fit(module, datamodule=datamodule)
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    expected = {"csv": "metrics.csv", "tensorboard": "events.out.tfevents", "wandb": ".wandb"}
    assert any(expected[logger] in name for name in written), sorted(written)[:20]


def test_hydra_flags_are_not_mistaken_for_overrides(capsys: pytest.CaptureFixture) -> None:
    code, err = run_entry(train_entry, "--cfg", "job", "model=fcn")
    assert code == 0, err[-2000:]
    assert "name: fcn" in capsys.readouterr().out


def test_model_metadata_sets_the_monitor_direction(tmp_path: Path) -> None:
    """A model registered with higher_is_better=False is monitored for its minimum."""
    from visionzoo.registry import model_info

    register_model("segmentation", "zz_lower_is_better", higher_is_better=False)(
        model_info("unet").factory
    )
    try:
        cfg = compose([*TINY_SEG, "logger=none"], tmp_path)
        _, module, _ = build_run(cfg, tmp_path)
        assert module.monitor_mode == "max"  # the task's own choice for unet
        cfg.model.name = "zz_lower_is_better"
        _, module, _ = build_run(cfg, tmp_path)
        assert module.monitor_mode == "min"
    finally:
        _MODELS.pop("zz_lower_is_better")


def test_eval_data_keys_change_the_checkpoint_unless_a_task_is_chosen() -> None:
    """``eval.py ckpt_path=... data.root=...`` edits the checkpoint's data section (``+``);
    with ``task=<family>`` (a metric-only model) the task's config has the section already."""
    from visionzoo.cli.checks import checkpoint_changes

    assert checkpoint_changes(["ckpt_path=a.ckpt", "data.root=/x"]) == [
        "ckpt_path=a.ckpt",
        "+data.root=/x",
    ]
    metric_only = ["task=iqa", "model=niqe", "data.root=/x"]
    assert checkpoint_changes(metric_only) == metric_only
