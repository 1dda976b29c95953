"""Faults and bad input through the real entry points (in-process, so each row is cheap): one
line on stderr naming the key, file or value and what to do, exit status 2, no traceback."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SEG, fit_run, run_entry
from PIL import Image

from visionzoo.cli import eval_entry, train_entry


def mask_folder(root: Path, bad_value: int) -> list[str]:
    """A 4-image mask_folder dataset whose third mask holds ``bad_value``; its overrides."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[:8] = bad_value if i == 2 else 1
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return [
        "task=segmentation",
        "data=mask_folder",
        f"data.root={root}",
        "data.num_classes=2",
        "data.image_size=[32,32]",
        "data.batch_size=2",
        "data.splits={train: '0:4', val: '0:4', test: '0:4'}",
        "callbacks.progress=none",
        "logger=none",
    ]


# (case, arguments, what stderr must name)
BAD_INPUT = [
    (
        "epochs not a number",
        ["task=segmentation", "trainer.max_epochs=abc"],
        ["trainer.max_epochs"],
    ),
    ("zero epochs", ["task=segmentation", "trainer.max_epochs=0"], ["trainer.max_epochs", "≥ 1"]),
    ("batch size 0", ["task=segmentation", "data.batch_size=0"], ["data.batch_size", "≥ 1"]),
    ("negative batch size", ["data.batch_size=-1"], ["data.batch_size=-1"]),
    ("batch size not a number", ["data.batch_size=abc"], ["data.batch_size='abc'"]),
    ("seed not a number", ["seed=abc"], ["seed='abc'"]),
    ("image size 0", ["data.image_size=0"], ["data.image_size=0", "positive"]),
    ("negative image size", ["task=segmentation", "data.image_size=[-32,32]"], ["image_size"]),
    ("lr not a number", ["optimizer.lr=abc"], ["optimizer.lr", "positive number"]),
    ("experiment typo", ["experiment=bccd_yolov5"], ["experiment/bccd_yolov5", "bccd_yolov5n"]),
    ("model typo", ["model=yolo5"], ["model/yolo5", "yolov5"]),
    (
        "non-ASCII path unquoted",
        ["task=segmentation", "data=mask_folder", "data.root=/tmp/données"],
        ["data.root=/tmp/données", 'data.root="/tmp/données"'],
    ),
]


@pytest.mark.parametrize(
    ("args", "needles"), [r[1:] for r in BAD_INPUT], ids=[r[0] for r in BAD_INPUT]
)
def test_bad_option_is_one_line(args: list[str], needles: list[str]) -> None:
    code, err = run_entry(train_entry, *args)
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.startswith("error: ") and all(n in err for n in needles), err


def test_unwritable_output_folder_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = run_entry(train_entry, *TINY_SEG, f"paths.output_root={blocker}/runs")
    assert code == 2 and "Traceback" not in err, err
    assert str(blocker) in err and "writable" in err and err.count("\n") == 1, err


def test_bad_mask_inside_loader_workers_is_one_line(tmp_path: Path) -> None:
    """With the default 2 workers the worker's re-raised DataError carries its whole traceback;
    only the original message is printed."""
    args = [*mask_folder(tmp_path / "data", bad_value=7), "data.num_workers=2"]
    code, err = run_entry(train_entry, *args, "trainer.max_epochs=1")
    assert code == 2, err
    assert "Traceback" not in err and "worker" not in err and err.count("\n") == 1, err
    assert "2.png" in err and "data.value_map" in err, err


def test_non_finite_loss_stops_with_the_step_and_keeps_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, err = run_entry(
        train_entry,
        *TINY_SEG,
        "optimizer.lr=1e9",
        "trainer.max_epochs=4",
        "logger=none",
        f"hydra.run.dir={run}",
    )
    assert code == 2 and "Traceback" not in err, err
    assert "training loss is nan" in err and "epoch" in err and "optimizer.lr" in err, err
    failed_epoch = int(re.search(r"at epoch (\d+)", err).group(1))
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == failed_epoch - 1  # the epochs before the failure are kept


def test_decompression_bomb_names_the_file(tmp_path: Path, monkeypatch) -> None:
    from visionzoo.core.io import DataError, read_rgb

    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 px > 2 × limit: PIL refuses
    with pytest.raises(DataError, match="huge.png.*too large"):
        read_rgb(path)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-epoch segmentation run monitoring val/loss for its *maximum*, which makes an early
    epoch the best one (Lightning's own save_last would then leave last.ckpt at it)."""
    run = tmp_path_factory.mktemp("seg_run")
    overrides = [*TINY_SEG, "trainer.max_epochs=3", "logger=none", "task.monitor=val/loss"]
    fit_run([*overrides, "task.monitor_mode=max"], run)
    return run


def test_last_checkpoint_is_the_latest_epoch(seg_run: Path) -> None:
    folder = seg_run / "checkpoints"
    best = torch.load(folder / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] < 2  # the premise: the best epoch is not the last one
    assert last["epoch"] == 2 and last["global_step"] > best["global_step"]


def test_checkpoints_follow_the_umask(seg_run: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for ckpt in (seg_run / "checkpoints").glob("*.ckpt"):
        assert ckpt.stat().st_mode & 0o777 == 0o666 & ~mask, ckpt


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    files = {"empty": folder / "empty.ckpt", "truncated": folder / "half.ckpt"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[:4096])
    files["bare tensor"] = folder / "tensor.ckpt"
    torch.save(torch.zeros(3), files["bare tensor"])
    return files


@pytest.mark.parametrize(
    ("case", "needle"),
    [("empty", "is empty (0 bytes)"), ("truncated", "incomplete"), ("bare tensor", "a Tensor")],
)
def test_bad_checkpoint_is_one_line_for_eval_and_resume(
    case: str, needle: str, seg_run: Path, tmp_path: Path
) -> None:
    path = _bad_checkpoints(tmp_path, seg_run / "checkpoints" / "last.ckpt")[case]
    for entry, args in ((eval_entry, []), (train_entry, [*TINY_SEG, "logger=none"])):
        code, err = run_entry(entry, *args, f"ckpt_path={path}")
        assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
        assert path.name in err and needle in err, err


def test_resume_into_another_model_says_what_differs(seg_run: Path) -> None:
    last = seg_run / "checkpoints" / "last.ckpt"
    code, err = run_entry(train_entry, *TINY_SEG, "model=fcn", "logger=none", f"ckpt_path={last}")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert "model.name 'unet' vs 'fcn'" in err and "without ckpt_path" in err, err


def test_eval_prints_one_table_with_significant_digits(seg_run: Path, capsys) -> None:
    last = seg_run / "checkpoints" / "last.ckpt"
    code, err = run_entry(eval_entry, f"ckpt_path={last}")
    out = capsys.readouterr().out
    assert code == 0, err
    assert out.count("val/miou") == 1, out  # Lightning's own results table is off
    assert re.search(r"val/iou_\w+ +│ +(0|1|0\.\d{1,4}|\d\.\d+e-\d+) ", out), out


def _eval_metrics(run: Path, *args: str) -> dict[str, float]:
    code, err = run_entry(eval_entry, *args, f"hydra.run.dir={run}")
    assert code == 0, err
    return json.loads((run / "eval_metrics.json").read_text())["metrics"]


def test_eval_takes_inference_options_of_the_checkpoint_task(seg_run: Path, tmp_path: Path) -> None:
    last = f"ckpt_path={seg_run / 'checkpoints' / 'last.ckpt'}"
    plain = _eval_metrics(tmp_path / "plain", last)
    flip = _eval_metrics(tmp_path / "flip", last, "task.inference.flip=true")
    assert plain["val/miou"] != flip["val/miou"]  # applied, not silently ignored
    code, err = run_entry(eval_entry, last, "task.inference.nope=1")
    assert code == 2 and "task.inference.nope" in err and "crop" in err, err


def test_eval_on_a_moved_dataset_root(tmp_path: Path) -> None:
    data = tmp_path / "data"
    overrides = [o for o in mask_folder(data, bad_value=1) if o.startswith(("task=", "data"))]
    fit_run([*overrides, "trainer.max_epochs=1", "logger=none", "data.num_workers=0"], tmp_path)
    ckpt = f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"
    before = _eval_metrics(tmp_path / "before", ckpt)
    data.rename(tmp_path / "moved")
    code, err = run_entry(eval_entry, ckpt)
    assert code == 2 and "data.root" in err, err
    after = _eval_metrics(tmp_path / "after", ckpt, f"data.root={tmp_path / 'moved'}")
    assert after == before


def test_binary_masks_without_value_map_are_refused(tmp_path: Path) -> None:
    """0/255 masks read with the default ignore_index 255: every foreground pixel would be
    ignored and the run would report mIoU 1.0; refused, naming data.value_map."""
    args = mask_folder(tmp_path / "data", bad_value=255)  # 255 in one of the four masks
    root = tmp_path / "data"
    for i in range(4):  # now all four: a quarter is 0, three quarters 255
        mask = np.full((32, 32), 255, np.uint8)
        mask[:8] = 0
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    code, err = run_entry(train_entry, *args, "data.num_workers=0", "trainer.max_epochs=1")
    assert code == 2 and "Traceback" not in err, err
    assert "75% of the pixels" in err and "data.value_map" in err and "class_1" in err, err
    fixed = [*args, "data.value_map={0: 0, 255: 1}", "data.num_workers=0"]
    code, err = run_entry(train_entry, *fixed, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}")
    assert code == 0, err


def test_mask_messages_say_what_to_set(tmp_path: Path) -> None:
    from visionzoo.core.io import DataError, list_images
    from visionzoo.segmentation.formats import MaskDecoder

    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (128, 64, 0)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png.*colour \(RGB\).*data\.palette"):
        MaskDecoder(num_classes=2)(tmp_path / "rgb.png")
    grey_rgb = np.repeat(np.array([[0, 1], [1, 0]], np.uint8)[..., None], 3, axis=2)
    Image.fromarray(grey_rgb).save(tmp_path / "grey_rgb.png")  # RGB file of grey class ids: fine
    assert MaskDecoder(num_classes=2)(tmp_path / "grey_rgb.png").tolist() == [[0, 1], [1, 0]]
    Image.fromarray(np.array([[0, 255], [11, 3]], np.uint8)).save(tmp_path / "camvid.png")
    decoder = MaskDecoder(num_classes=11, value_map={**{i: i for i in range(11)}, 11: 255})
    with pytest.raises(DataError, match=r"stored values \[255\] that data.value_map does not map"):
        decoder(tmp_path / "camvid.png")
    with pytest.raises(DataError, match=r"nowhere.*check data\.root"):
        list_images(tmp_path / "nowhere")


def test_asynchronous_checkpoint_is_a_snapshot(tmp_path: Path) -> None:
    """The background writer stores the tensors as they were when the save was asked for, even
    if training changes them before the thread writes (Lightning copies them first)."""
    from visionzoo.cli import checkpoint_io

    io = checkpoint_io(asynchronous=True)
    weight = torch.arange(6.0)
    io.save_checkpoint({"w": weight, "epoch": 3}, tmp_path / "a.ckpt")
    weight.add_(100)  # the next optimizer step
    io.teardown()  # joins the writer, as fit's teardown does
    saved = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert saved["epoch"] == 3 and torch.equal(saved["w"], torch.arange(6.0))


def test_disk_full_during_training_is_one_line_and_keeps_checkpoints(
    tmp_path: Path, monkeypatch
) -> None:
    """A checkpoint write failing on the background thread (disk full from epoch 2 on) stops
    the run with one line naming the file, and epoch 1's checkpoints stay readable."""
    import errno

    from visionzoo.core import checkpoint

    real, calls = checkpoint.atomic_write_bytes, []

    def filling_disk(path, data):
        calls.append(path)
        if len(calls) > 2:  # epoch 1 wrote best.ckpt and last.ckpt
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", filling_disk)
    run = tmp_path / "run"
    code, err = run_entry(
        train_entry, *TINY_SEG, "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={run}"
    )
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert "No space left" in err and str(run / "checkpoints") in err, err
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0


def test_plots_every_n_validations_and_the_last(seg_run: Path) -> None:
    """3 epochs with the default task.plot_every=5: only the final epoch draws its figures."""
    drawn = sorted(p.name for p in seg_run.rglob("val_*_epoch*.png"))
    assert drawn == ["val_iou_epoch002.png", "val_samples_epoch002.png"], drawn


def test_plots_due_counts_validation_epochs() -> None:
    from types import SimpleNamespace

    from visionzoo.core.module import VisionModule

    def due(epoch: int, every: int, max_epochs: int = 12) -> bool:
        stub = SimpleNamespace(hparams={"plots": True}, plot_every=every, current_epoch=epoch)
        stub.trainer = SimpleNamespace(
            sanity_checking=False, is_global_zero=True, max_epochs=max_epochs
        )
        return VisionModule.plots_due(stub)

    assert [e for e in range(12) if due(e, 5)] == [4, 9, 11]  # epochs 5, 10 and the final 12
    assert [e for e in range(3) if due(e, 1)] == [0, 1, 2]
