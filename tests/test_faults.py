"""Faults and bad input through the real entry points (in-process, so each row is cheap): one
line on stderr naming the key, file or value and what to do, exit status 2, no traceback."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SEG, fit_run, run_entry
from PIL import Image

from visionzoo.cli import eval_entry, predict_entry, train_entry


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


def image_folder(root: Path) -> list[str]:
    """Four good 32×32 image + mask pairs under ``root``; overrides training on them."""
    return [*mask_folder(root, bad_value=1), "data.num_workers=0", "trainer.max_epochs=1"]


@dataclass
class Ctx:
    """What a row's setup may use: a fresh folder, monkeypatch, and the shared 3-epoch run."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest

    @property
    def last(self) -> Path:
        return self.request.getfixturevalue("seg_run") / "checkpoints" / "last.ckpt"

    @property
    def run(self) -> Path:
        return self.tmp / "run"


@dataclass
class Fault:
    """One row: the entry point, its arguments (or a setup building them from ``Ctx``), the
    texts the one error line must contain (the file / key / value and what to do), and an
    optional check of what must survive the failure."""

    name: str
    entry: Callable[[], None]
    args: list[str] | Callable[[Ctx], list[str]]
    needles: list[str] | Callable[[Ctx], list[str]]
    then: Callable[[Ctx, str], None] | None = None


def _corrupt_image(ctx: Ctx) -> list[str]:
    args = image_folder(ctx.tmp / "data")
    (ctx.tmp / "data" / "images" / "1.png").write_bytes(b"definitely not a png")
    return [*args, f"hydra.run.dir={ctx.run}"]


def _bomb(ctx: Ctx) -> list[str]:
    ctx.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32² px > 2 × limit: PIL refuses
    return [*image_folder(ctx.tmp / "data"), f"hydra.run.dir={ctx.run}"]


def _binary_masks(ctx: Ctx) -> list[str]:
    args = mask_folder(ctx.tmp / "data", bad_value=255)
    for i in range(4):  # every mask: a quarter 0, three quarters 255
        mask = np.full((32, 32), 255, np.uint8)
        mask[:8] = 0
        Image.fromarray(mask).save(ctx.tmp / "data" / "masks" / f"{i}.png")
    return [*args, "data.num_workers=0", "trainer.max_epochs=1"]


def _blocked_output(ctx: Ctx) -> list[str]:
    (ctx.tmp / "a_file").write_text("")
    return [*TINY_SEG, f"paths.output_root={ctx.tmp / 'a_file'}/runs"]


def _disk_full(ctx: Ctx) -> list[str]:
    """Checkpoint writes fail from epoch 2 on (on the background writer thread)."""
    from visionzoo.core import checkpoint

    real, calls = checkpoint.atomic_write_bytes, []

    def filling_disk(path, data):
        calls.append(path)
        if len(calls) > 2:  # epoch 1 wrote best.ckpt and last.ckpt
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    ctx.monkeypatch.setattr(checkpoint, "atomic_write_bytes", filling_disk)
    return [*TINY_SEG, "trainer.max_epochs=3", "logger=none", f"hydra.run.dir={ctx.run}"]


def _kept_epochs_before_the_failure(ctx: Ctx, line: str) -> None:
    """``last.ckpt`` still holds the epoch before the one that failed (read off the line, or
    epoch 1 for the disk filling up in epoch 2)."""
    found = re.search(r"at epoch (\d+)", line)
    failed = int(found.group(1)) if found else 1
    last = torch.load(ctx.run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == failed - 1


def _bad_checkpoint(kind: str) -> Callable[[Ctx], Path]:
    def make(ctx: Ctx) -> Path:
        path = ctx.tmp / f"{kind.replace(' ', '_')}.ckpt"
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated":
            path.write_bytes(ctx.last.read_bytes()[:4096])
        else:
            torch.save(torch.zeros(3), path)
        return path

    return make


def _list_split(ctx: Ctx) -> list[str]:
    return [*image_folder(ctx.tmp / "data"), "data.splits.train=lists/train.txt"]


SEG = ["task=segmentation"]
FAULTS = [
    # ---- options: type, range, choice, spelling (one validator after composition)
    Fault("epochs not a number", train_entry, [*SEG, "trainer.max_epochs=abc"],
          ["trainer.max_epochs"]),
    Fault("zero epochs", train_entry, [*SEG, "trainer.max_epochs=0"],
          ["trainer.max_epochs", "≥ 1"]),
    Fault("batch size 0", train_entry, [*SEG, "data.batch_size=0"], ["data.batch_size", "≥ 1"]),
    Fault("negative batch size", train_entry, ["data.batch_size=-1"], ["data.batch_size=-1"]),
    Fault("batch size not a number", train_entry, ["data.batch_size=abc"],
          ["data.batch_size='abc'"]),
    Fault("seed not a number", train_entry, ["seed=abc"], ["seed='abc'"]),
    Fault("image size 0", train_entry, ["data.image_size=0"], ["data.image_size=0", "positive"]),
    Fault("negative image size", train_entry, [*SEG, "data.image_size=[-32,32]"], ["image_size"]),
    Fault("lr not a number", train_entry, ["optimizer.lr=abc"],
          ["optimizer.lr", "positive number"]),
    Fault("augment not a number", train_entry, ["data.augment.mosaic=abc"],
          ["data.augment.mosaic='abc'", "number"]),
    Fault("progress choice", train_entry, ["callbacks.progress=fancy"],
          ["callbacks.progress='fancy'", "rich, tqdm, none"]),
    Fault("inference mode choice", train_entry, [*SEG, "task.inference.mode=tiles"],
          ["task.inference.mode='tiles'", "whole, slide"]),
    Fault("plot_every 0", train_entry, [*SEG, "task.plot_every=0"], ["task.plot_every=0", "≥ 1"]),
    Fault("yes/no option typo", train_entry, ["callbacks.checkpoint.asynchronous=maybe"],
          ["callbacks.checkpoint.asynchronous='maybe'", "true or false"]),
    Fault("list prefix not a mapping", train_entry, [*SEG, "data.list_prefix=abc"],
          ["data.list_prefix='abc'", "data.list_prefix="]),
    Fault("trainer setting Lightning refuses", train_entry, ["trainer.devices=abc"],
          ["trainer.devices='abc'", "configs/trainer"]),
    Fault("misspelt key", train_entry, ["trainer.max_epoch=3"],
          ["trainer.max_epoch", "max_epochs"]),
    Fault("model typo", train_entry, ["model=yolo5"], ["model=yolo5 does not exist", "yolov5"]),
    Fault("unknown model", train_entry, [*SEG, "model=no_such_model"],
          ["no_such_model", "unet", "deeplabv3"]),
    Fault("experiment typo", train_entry, ["experiment=bccd_yolov5"],
          ["experiment=bccd_yolov5", "bccd_yolov5n"]),
    Fault("dataset of another task (seg)", train_entry, ["task=segmentation", "data=bccd"],
          ["data=bccd is a detection dataset, not a segmentation one", "synthetic_segmentation"]),
    Fault("dataset of another task (det)", train_entry, ["task=detection", "data=membrane"],
          ["data=membrane is a segmentation dataset, not a detection one", "synthetic_detection"]),
    Fault("non-ASCII path unquoted", train_entry,
          [*SEG, "data=mask_folder", "data.root=/tmp/données"],
          ["data.root=/tmp/données", 'data.root="/tmp/données"']),
    Fault("detection size not a stride multiple", train_entry,
          ["task=detection", "data.image_size=100"], ["data.image_size=100", "multiple of 32"]),
    # ---- data: paths, files, contents (named, also from inside loader workers)
    Fault("coco root missing", train_entry,
          lambda c: ["task=detection", "data=coco", f"data.root={c.tmp / 'nope'}"],
          lambda c: [str(c.tmp / "nope"), "set data.root"]),
    Fault("dataset root not set", train_entry, [*SEG, "data=mask_folder", "data.num_classes=2"],
          ["data.root"]),
    Fault("dataset root missing", train_entry,
          lambda c: [*SEG, "data=mask_folder", "data.num_classes=2", f"data.root={c.tmp / 'nope'}"],
          lambda c: [str(c.tmp / "nope"), "data.root"]),
    Fault("corrupt image", train_entry, _corrupt_image, ["1.png", "corrupt"]),
    Fault("decompression bomb", train_entry, _bomb, ["0.png", "too large"]),
    Fault("bad mask value in a loader worker", train_entry,
          lambda c: [*mask_folder(c.tmp / "data", bad_value=7), "data.num_workers=2",
                     "trainer.max_epochs=1"],
          ["2.png", "data.value_map"]),
    Fault("0/255 masks without value_map", train_entry, _binary_masks,
          ["75% of the pixels", "data.value_map={0: 0, 255: 1}", "class_1"]),
    Fault("split list file missing", train_entry, _list_split,
          ["lists/train.txt", "data.splits.train", "does not exist"]),
    # ---- output folder and disk
    Fault("output folder not writable", train_entry, _blocked_output,
          lambda c: [str(c.tmp / "a_file"), "writable"]),
    Fault("disk full while checkpointing", train_entry, _disk_full,
          lambda c: ["No space left", str(c.run / "checkpoints"), "free space"],
          then=_kept_epochs_before_the_failure),
    # ---- training
    Fault("non-finite loss", train_entry,
          lambda c: [*TINY_SEG, "optimizer.lr=1e9", "trainer.max_epochs=4", "logger=none",
                     f"hydra.run.dir={c.run}"],
          ["training loss is nan", "epoch", "lower optimizer.lr", "checkpoints written so far"],
          then=_kept_epochs_before_the_failure),
    # ---- checkpoints: missing, broken, other setups, other options
    Fault("checkpoint missing", eval_entry, lambda c: [f"ckpt_path={c.tmp / 'x.ckpt'}"],
          ["x.ckpt", "does not exist", "train.py"]),
    *(
        Fault(f"{kind} checkpoint ({script})", entry,
              lambda c, k=kind, a=args: [*a, f"ckpt_path={_bad_checkpoint(k)(c)}"],
              [f"{kind.replace(' ', '_')}.ckpt", needle])
        for kind, needle in (("empty", "is empty (0 bytes)"), ("truncated", "incomplete"),
                             ("bare tensor", "a Tensor"))
        for script, entry, args in (("eval", eval_entry, []),
                                    ("resume", train_entry, [*TINY_SEG, "logger=none"]))
    ),
    Fault("resume into another model", train_entry,
          lambda c: [*TINY_SEG, "model=fcn", "logger=none", f"ckpt_path={c.last}"],
          ["model.name 'unet' vs 'fcn'", "without ckpt_path"]),
    Fault("eval option the task lacks", eval_entry,
          lambda c: [f"ckpt_path={c.last}", "task.inference.nope=1"],
          ["task.inference.nope", "crop"]),
    Fault("checkpoint path is a folder", eval_entry, lambda c: [f"ckpt_path={c.last.parent}"],
          ["is a folder", "last.ckpt"]),
    Fault("eval on a dataset of another task", eval_entry,
          lambda c: [f"ckpt_path={c.last}", "data=bccd"],
          ["data=bccd is a detection dataset, not a segmentation one"]),
    Fault("eval split", eval_entry, lambda c: [f"ckpt_path={c.last}", "split=train"],
          ["split='train'", "val or test"]),
    Fault("predict without output", predict_entry,
          lambda c: [f"ckpt_path={c.last}", f"input={c.tmp}"],
          ["output is required", "output=<value>"]),
    Fault("predict input missing", predict_entry,
          lambda c: [f"ckpt_path={c.last}", f"input={c.tmp / 'nope'}", f"output={c.tmp / 'o'}"],
          lambda c: [f"input='{c.tmp / 'nope'}'", "image file", "folder"]),
    Fault("save_predictions for segmentation", eval_entry,
          lambda c: [f"ckpt_path={c.last}", "save_predictions=true"],
          ["save_predictions=true", "'segmentation'", "predict.py"]),
]  # fmt: skip


@pytest.mark.parametrize("case", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_one_line(
    case: Fault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Exit status 2 and one line on stderr, ``error: ...``, that names the key, file or value
    and says what to do; no traceback."""
    ctx = Ctx(tmp_path, monkeypatch, request)
    args = case.args(ctx) if callable(case.args) else case.args
    code, err = run_entry(case.entry, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    needles = case.needles(ctx) if callable(case.needles) else case.needles
    missing = [n for n in needles if n not in lines[0]]
    assert not missing, f"{missing} not in: {lines[0]}"
    if case.then is not None:
        case.then(ctx, lines[0])


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


def test_binary_masks_train_with_value_map(tmp_path: Path) -> None:
    """The fix the refusal names (table row "0/255 masks without value_map") works."""
    args = _binary_masks(Ctx(tmp_path, None, None))
    fixed = [*args, "data.value_map={0: 0, 255: 1}"]
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
