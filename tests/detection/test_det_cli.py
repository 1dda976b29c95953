"""Detection end to end: train → eval → predict → export → check_data, resume, every model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import CPU_DDP, TINY_DET, compose, fit_run, killed_run, run_cli, run_entry
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionzoo.cli import (
    build_run,
    check_data_entry,
    eval_entry,
    export_entry,
    predict_entry,
)
from visionzoo.registry import list_models


def _synthetic_root(run_dir: Path) -> Path:
    import yaml

    cfg = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    return Path(cfg["paths"]["output_root"]).parent / "cache" / "synthetic" / "detection_shapes"


@pytest.mark.slow
def test_train_eval_predict_export_end_to_end(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("train.py", *TINY_DET, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "metrics.json").read_text())
    metrics = result["metrics"]
    for key in ("val/map", "val/map50", "val/map75", "val/precision", "val/recall", "val/map_best"):
        assert key in metrics, key
    logs = Path(result["paths"]["logs"])
    # results.csv row N pairs epoch N's averaged training losses with epoch N's validation
    with (logs / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (logs / "metrics.csv").open() as f:
        logged = [r for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for row, epoch_row in zip(rows, logged, strict=True):
        assert int(epoch_row["epoch"]) == int(row["epoch"])
        assert float(row["train/loss"]) == pytest.approx(float(epoch_row["train/loss_epoch"]))
    for name in (
        "labels.png",
        "val_pr_curve.png",
        "val_confusion_matrix.png",
        "val_predictions.png",
    ):
        assert (logs / "plots" / name).is_file(), name
    best = Path(result["paths"]["best checkpoint"])
    hp = torch.load(best, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["task_name"] == "detection" and hp["model"]["name"] == "yolov5"
    assert hp["data_meta"]["class_names"] == ["circle", "square", "triangle"]

    # eval / predict / export in-process: the script files run as subprocesses in the toy
    # family's end-to-end test, and every process start costs seconds of imports
    code, err = run_entry(
        eval_entry,
        f"ckpt_path={best}",
        "save_predictions=true",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert code == 0, err[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["metrics"]
    assert evaluated["val/map"] == pytest.approx(metrics["val/map_best"], abs=1e-6)
    root = _synthetic_root(run_dir)
    gt = COCO(str(root / "annotations" / "instances_val.json"))

    def coco_map(results: list[dict]) -> float:
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return float(ev.stats[0])

    # eval's saved detections, scored by pycocotools against the dataset's own annotations,
    # give the mAP eval reported
    saved = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert coco_map(saved) == pytest.approx(evaluated["val/map"], abs=1e-9)
    # one image per evaluation batch: eval's input tensors are predict's
    code, err = run_entry(
        eval_entry,
        f"ckpt_path={best}",
        "save_predictions=true",
        "data.eval_batch_size=1",
        f"hydra.run.dir={tmp_path / 'eval1'}",
    )
    assert code == 0, err
    one_by_one = json.loads((tmp_path / "eval1" / "predictions.json").read_text())

    out = tmp_path / "pred"
    code, err = run_entry(
        predict_entry, f"ckpt_path={best}", f"input={root / 'images' / 'val'}", f"output={out}"
    )
    assert code == 0, err[-3000:]
    results = json.loads((out / "predictions.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    assert {r["category_id"] for r in results} <= {1, 2, 3}
    drawn = sorted(out.glob("*_pred.jpg"))
    assert len(drawn) == 8
    src = Image.open(results[0]["file_name"])
    assert Image.open(out / f"{Path(results[0]['file_name']).stem}_pred.jpg").size == src.size
    # predictions are in original-image pixels: pycocotools accepts them against the GT file
    # and their image ids are the dataset's, as loadRes needs
    ids = {Path(img["file_name"]).name: img["id"] for img in gt.dataset["images"]}
    assert all(r["image_id"] == ids[Path(r["file_name"]).name] for r in results)

    # predict preprocesses as eval does for a batch of one: the same detections
    def rows(res: list[dict]) -> list[tuple]:
        return sorted(
            (
                r["image_id"],
                r["category_id"],
                *(round(v, 2) for v in r["bbox"]),
                round(r["score"], 4),
            )
            for r in res
        )

    assert rows(results) == rows(one_by_one)
    assert coco_map(results) == pytest.approx(coco_map(one_by_one), abs=1e-9)

    pytest.importorskip("onnxruntime")
    capsys.readouterr()
    code, err = run_entry(export_entry, f"ckpt_path={best}", f"output={tmp_path / 'm.onnx'}")
    assert code == 0, err[-3000:]
    diff = float(capsys.readouterr().out.strip().rsplit(" ", 1)[-1])
    assert diff < 1e-4 and (tmp_path / "m.onnx").is_file()


def test_check_data_reports_bccd(capsys) -> None:
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bccd"
    if not data.is_dir():
        pytest.skip("shared BCCD data not present")
    capsys.readouterr()
    code, err = run_entry(check_data_entry, "data=bccd", "splits=[val]", "decode_images=false")
    assert code == 0, err[-3000:]
    out = capsys.readouterr().out
    assert "87" in out and "RBC" in out and "Platelets" in out


RCNN_LIGHT = {
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 50,
    "box_batch_size_per_image": 32,
    "box_head_dim": 128,
}


@pytest.mark.parametrize("model", list_models("detection"))
def test_fast_dev_run_every_detection_model(model: str, tmp_path: Path) -> None:
    # the first warm-up step under AdamW has learning rate 0 in every group (Ultralytics'
    # recipe); a bias rate lets one step show that the parameters are optimised
    overrides = [*TINY_DET, f"model={model}", "trainer.fast_dev_run=true", "logger=none"]
    if "rcnn" in model:  # CPU-sized proposal and RoI counts (the defaults are torchvision's)
        overrides += [f"model.{k}={v}" for k, v in RCNN_LIGHT.items()]
    cfg = compose([*overrides, "task.warmup_bias_lr=0.1"], tmp_path)
    trainer, module, datamodule = build_run(cfg, tmp_path)
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer.fit(module, datamodule=datamodule)
    changed = any(
        not torch.equal(a, b) for a, b in zip(before, module.model.parameters(), strict=True)
    )
    assert changed, "one optimizer step must change the weights"
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.slow
def test_resume_continues_the_exact_schedule(tmp_path: Path) -> None:
    """Warm-up, accumulation, EMA, mosaic closing: killed with SIGKILL inside epoch 3 of 4
    and resumed from last.ckpt, a run ends with the weights of one uninterrupted run."""
    overrides = [
        *TINY_DET,
        "trainer.max_epochs=4",
        "logger=none",
        "task.plots=false",
        "task.warmup_min_iters=3",
        "task.nominal_batch_size=16",
        "data.augment.close_mosaic=1",
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


def test_every_fit_counts_its_optimizer_steps_afresh(tmp_path: Path) -> None:
    """A module fitted a second time (a fresh trainer, as each benchmark run builds) steps like
    the first: the accumulation counter must not carry over from the earlier fit."""
    overrides = [
        *TINY_DET,
        "data.batch_size=4",
        "task.nominal_batch_size=4",  # one optimizer step per batch
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "logger=none",
        "task.plots=false",
    ]
    cfg = compose(overrides, tmp_path)
    trainer, module, datamodule = build_run(cfg, tmp_path)
    trainer.fit(module, datamodule=datamodule)
    again, _, _ = build_run(cfg, tmp_path)
    again.fit(module, datamodule=datamodule)
    assert trainer.global_step == again.global_step == 4  # 16 images / batch 4


@pytest.mark.slow
def test_ddp_validation_gathers_every_rank(tmp_path: Path, monkeypatch) -> None:
    """Two CPU processes each evaluate half of the validation images; the gathered mAP equals
    a single-process evaluation of the same checkpoint. Lightning gives each DDP process one
    thread, so the single process gets one too: the same float results, the same NMS ties."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "ddp"
    proc = run_cli(
        "train.py",
        *TINY_DET,
        *CPU_DDP,
        "trainer.max_epochs=1",
        "data.eval_batch_size=2",
        "logger=none",
        "task.plots=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "metrics.json").read_text())
    last = result["paths"]["last checkpoint"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # in-process, as one subprocess under OMP_NUM_THREADS=1 would
    try:
        code, err = run_entry(eval_entry, f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'eval'}")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err[-3000:]
    single = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["metrics"]
    assert single["val/map"] == pytest.approx(result["metrics"]["val/map"], abs=1e-9)
    assert single["val/mar_100"] == pytest.approx(result["metrics"]["val/mar_100"], abs=1e-9)


def test_plots_and_logging_do_not_change_training(tmp_path: Path) -> None:
    """Figures (labels, PR curves, confusion matrix, prediction grid) and the CSV logger must
    not consume random state the training uses: an epoch with both on gives the weights of an
    epoch with both off."""
    base = [*TINY_DET, "trainer.max_epochs=1", "task.plot_every=1"]
    _, drawn = fit_run([*base, "task.plots=true", "logger=csv"], tmp_path / "on")
    _, plain = fit_run([*base, "task.plots=false", "logger=none"], tmp_path / "off")
    assert list((tmp_path / "on").rglob("val_confusion_matrix.png"))  # the premise: it drew
    for (name, a), b in zip(drawn.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
