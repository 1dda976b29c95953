"""check_data.py for segmentation: pixel counts equal a direct count of the mask files, and
every problem is listed with its file instead of stopping the report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, compose
from PIL import Image

from visionzoo.cli import check_data
from visionzoo.segmentation.check import check_pairs, format_report
from visionzoo.segmentation.formats import MaskDecoder, mask_folder_pairs

MEMBRANE = SHARED_DATA / "membrane"


@pytest.mark.skipif(not MEMBRANE.is_dir(), reason="needs ../shared/data/membrane")
def test_membrane_counts_equal_the_mask_files(capsys: pytest.CaptureFixture) -> None:
    cfg = compose(["data=membrane", "splits=[val]"], MEMBRANE, config_name="check_data")
    check_data(cfg)
    text = capsys.readouterr().out
    files = sorted((MEMBRANE / "label").iterdir(), key=lambda p: int(p.stem))[24:30]
    masks = [np.asarray(Image.open(p)) for p in files]
    cell = sum(int((m == 255).sum()) for m in masks)
    membrane = sum(int((m == 0).sum()) for m in masks)
    assert text.startswith("== val ==\npairs: 6   mask sizes: 512×512")
    assert re.search(rf"membrane +{membrane} ", text) and re.search(rf"cell +{cell} ", text)
    assert "problems: 0" in text


def _write(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{stem}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def test_problems_are_listed_not_fatal(tmp_path: Path) -> None:
    image = np.zeros((8, 10, 3), np.uint8)
    mask = np.zeros((8, 10), np.uint8)
    mask[:2] = 1
    mask[-1] = 255  # ignored
    _write(tmp_path, "a_good", image, mask)
    _write(tmp_path, "b_small", image[:4], mask)  # image and mask sizes differ
    _write(tmp_path, "c_values", image, np.full((8, 10), 7, np.uint8))  # 7 is no class
    (tmp_path / "masks" / "d_corrupt.png").write_bytes(b"not a png")
    Image.fromarray(image).save(tmp_path / "images" / "d_corrupt.png")
    pairs = mask_folder_pairs(tmp_path, None)
    report = check_pairs(pairs, MaskDecoder(num_classes=3, ignore_index=255))
    assert report.pixels.tolist() == [2 * 50, 2 * 20, 0, 2 * 10]  # a_good + b_small
    files = [Path(f).name for f, _ in report.problems]
    assert files == ["b_small.png", "c_values.png", "d_corrupt.png"]
    text = format_report(report, ["bg", "fg", "other"])
    assert "image is 10×4, its mask 10×8" in text
    assert "declared classes never present: other" in text
    assert "problems: 4" in text
