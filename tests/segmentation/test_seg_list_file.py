"""``<image> <label>`` split list files: the pairs equal the ones built here from the files
written, in the file's order, and each bad input gets a one-line error naming the list file, the
line and the config key to change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.segmentation.formats import is_list_file, list_file_pairs

AUTHOR = "/home/author/CamVid"  # where the authors' machine kept the dataset


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(path)
    return path


def _camvid(root: Path, stems: list[str]) -> list[tuple[Path, Path]]:
    """SegNet-layout CamVid files under ``root``: the pairs a list of ``stems`` must give."""
    return [(_png(root / "train" / s), _png(root / "trainannot" / s)) for s in stems]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _error(*args, **kw) -> str:
    with pytest.raises(DataError) as info:
        list_file_pairs(*args, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("lists/train.txt", True),
        ("train.lst", True),
        ("val.LIST", True),
        (" /data/ImageSets/train_aug.txt ", True),
        ("train", False),
        ("0:24", False),
        (None, False),
        ("train.csv", False),
    ],
)
def test_is_list_file(split: str | None, expected: bool) -> None:
    assert is_list_file(split) is expected


def test_relative_lines_keep_the_file_order(tmp_path: Path) -> None:
    # 10 before 2 and a before b: the file's order, not a sorted one
    stems = ["10.png", "2.png", "b.png", "a.png"]
    expected = _camvid(tmp_path, stems)
    text = "train/10.png trainannot/10.png\ntrain/2.png\ttrainannot/2.png\n"
    text += "  ./train/b.png   trainannot/b.png  \ntrain/a.png \t trainannot/a.png"  # no final \n
    _write(tmp_path / "lists" / "train.txt", text)
    got = list_file_pairs(tmp_path, "lists/train.txt")
    assert [tuple(p.resolve() for p in pair) for pair in got] == [
        tuple(p.resolve() for p in pair) for pair in expected
    ]
    assert all(p.is_relative_to(tmp_path) for pair in got for p in pair)
    # the same list given by its absolute path, from a root it does not live in
    assert list_file_pairs(tmp_path, tmp_path / "lists" / "train.txt") == got


def test_comments_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    expected = _camvid(tmp_path, ["0001.png", "0002.png"])
    text = "\ufeff# CamVid train split\r\n\r\n   \r\ntrain/0001.png trainannot/0001.png\r\n"
    text += "  # train/0003.png trainannot/0003.png\r\n\ttrain/0002.png trainannot/0002.png\r\n"
    (tmp_path / "train.txt").write_bytes(text.encode("utf-8"))
    assert list_file_pairs(tmp_path, "train.txt") == expected


def test_absolute_lines_with_a_prefix_rewrite(tmp_path: Path) -> None:
    root = tmp_path / "CamVid"
    expected = _camvid(root, ["0001.png", "0002.png"])
    lines = [f"{AUTHOR}/train/{s} {AUTHOR}/trainannot/{s}" for s in ("0001.png", "0002.png")]
    _write(root / "train.txt", "\n".join(lines))
    for prefix in ({AUTHOR: ""}, {AUTHOR + "/": ""}, {"/elsewhere": "x", AUTHOR: ""}):
        assert list_file_pairs(root, "train.txt", prefix) == expected
    # a non-empty replacement substitutes the prefix: absolute, or relative to root
    assert list_file_pairs(tmp_path, root / "train.txt", {AUTHOR: str(root)}) == expected
    assert list_file_pairs(tmp_path, root / "train.txt", {AUTHOR: "CamVid"}) == [
        (
            tmp_path / "CamVid" / image.relative_to(root),
            tmp_path / "CamVid" / label.relative_to(root),
        )
        for image, label in expected
    ]
    # the first matching rewrite wins, so the later, right one is never used
    message = _error(root, "train.txt", {"/home/author": "", AUTHOR: ""})
    assert f"line 1: image '{AUTHOR}/train/0001.png' does not exist" in message
    assert repr(str(root / "CamVid" / "train" / "0001.png")) in message


def test_existing_absolute_paths_are_kept(tmp_path: Path) -> None:
    expected = _camvid(tmp_path / "data", ["x.png"])
    _write(tmp_path / "root" / "val.lst", " ".join(str(p) for p in expected[0]))
    assert list_file_pairs(tmp_path / "root", "val.lst", {AUTHOR: ""}) == expected


def test_missing_list_file_names_it_and_the_key(tmp_path: Path) -> None:
    message = _error(tmp_path, "lists/train.txt", stage="train")
    assert repr(str(tmp_path / "lists" / "train.txt")) in message
    assert "data.splits.train='lists/train.txt'" in message
    assert "set data.splits.train to an existing" in message
    assert "data.splits.<stage>" in _error(tmp_path, tmp_path / "none.txt")


def test_one_field_line(tmp_path: Path) -> None:
    _camvid(tmp_path, ["0001.png", "0002.png"])
    _write(tmp_path / "train.txt", "train/0001.png trainannot/0001.png\n\n0002\n")
    message = _error(tmp_path, "train.txt", stage="train")
    assert f"list file {str(tmp_path / 'train.txt')!r} (data.splits.train) line 3" in message
    assert "one path ('0002')" in message
    assert "<root>/splits/<name>.txt with data.splits.train=<name>" in message


def test_three_field_line_says_spaces_are_not_supported(tmp_path: Path) -> None:
    _png(tmp_path / "my image.png")
    _png(tmp_path / "my mask.png")
    _write(tmp_path / "val.txt", "# header\nmy image.png my mask.png\n")
    message = _error(tmp_path, "val.txt", stage="val")
    assert f"list file {str(tmp_path / 'val.txt')!r} (data.splits.val) line 2" in message
    assert "4 whitespace-separated fields" in message
    assert "paths with spaces cannot be read" in message


def test_list_without_pairs(tmp_path: Path) -> None:
    _write(tmp_path / "train.txt", "# nothing yet\n\n")
    message = _error(tmp_path, "train.txt", stage="train")
    assert repr(str(tmp_path / "train.txt")) in message and "data.splits.train" in message


def test_missing_absolute_files_suggest_the_common_prefix(tmp_path: Path) -> None:
    root = tmp_path / "CamVid"
    stems = ["0001.png", "0002.png", "0003.png"]
    expected = _camvid(root, stems)
    _write(
        root / "train.txt", "".join(f"{AUTHOR}/train/{s} {AUTHOR}/trainannot/{s}\n" for s in stems)
    )
    message = _error(root, "train.txt", stage="train")
    assert f"list file {str(root / 'train.txt')!r} (data.splits.train) line 1" in message
    assert f"image '{AUTHOR}/train/0001.png' does not exist" in message
    assert "(6 of 6 listed files are missing)" in message
    assert f"set data.list_prefix={{'{AUTHOR}': ''}}" in message
    # the suggestion, applied, reads the list
    assert list_file_pairs(root, "train.txt", {AUTHOR: ""}) == expected


def test_missing_label_only_on_a_later_line(tmp_path: Path) -> None:
    _camvid(tmp_path, ["0001.png"])
    _png(tmp_path / "train" / "0002.png")
    _write(
        tmp_path / "t.txt", "train/0001.png trainannot/0001.png\ntrain/0002.png trainannot/0002.png"
    )
    message = _error(tmp_path, "t.txt")
    assert "line 2: label 'trainannot/0002.png' does not exist" in message
    assert repr(str(tmp_path / "trainannot" / "0002.png")) in message
    assert f"check data.root={str(tmp_path)!r}" in message and "missing)" not in message


def test_relative_paths_with_an_extra_leading_folder(tmp_path: Path) -> None:
    expected = _camvid(tmp_path, ["0001.png"])
    _write(tmp_path / "t.txt", "CamVid/train/0001.png CamVid/trainannot/0001.png")
    assert "set data.list_prefix={'CamVid': ''}" in _error(tmp_path, "t.txt")
    assert list_file_pairs(tmp_path, "t.txt", {"CamVid": ""}) == expected


def test_absolute_paths_no_prefix_can_fix(tmp_path: Path) -> None:
    _write(tmp_path / "t.txt", f"{AUTHOR}/train/0001.png {AUTHOR}/trainannot/0001.png")
    message = _error(tmp_path, "t.txt")
    assert f"data.list_prefix={{'{AUTHOR}': '<that folder here>'}}" in message
    # a prefix matching only part of a folder name is not a match
    assert "<that folder here>" in _error(tmp_path, "t.txt", {"/home/author/Cam": ""})


def test_datamodule_reads_list_file_splits(tmp_path: Path) -> None:
    """``data.splits.<stage>`` naming a list file and ``data.list_prefix`` reach the loader."""
    from visionzoo.segmentation.data import SegmentationDataModule

    pairs = _camvid(tmp_path, ["b.png", "a.png", "c.png"])
    lines = "".join(f"{AUTHOR}/train/{i.name} {AUTHOR}/trainannot/{m.name}\n" for i, m in pairs)
    _write(tmp_path / "lists" / "train.txt", lines)
    _write(tmp_path / "lists" / "val.txt", f"train/{pairs[2][0].name} trainannot/c.png\n")
    dm = SegmentationDataModule(
        root=str(tmp_path),
        num_classes=2,
        splits={"train": "lists/train.txt", "val": "lists/val.txt"},
        list_prefix={AUTHOR: ""},
        image_size=[2, 3],
        num_workers=0,
    )
    dm.setup("fit")
    assert dm.datasets["train"].pairs == pairs
    assert dm.datasets["val"].pairs == pairs[2:]
    assert dm.datasets["train"][0]["path"] == str(pairs[0][0])
