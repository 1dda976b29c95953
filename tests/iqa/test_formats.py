"""The four label-file readers on hand-written files in each real format, and their errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.iqa.formats import (
    parse_distorted_name,
    read_fr_csv,
    read_kadid,
    read_nr_csv,
    read_tid2013,
)


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def test_names_of_kadid_and_tid2013_parse() -> None:
    assert parse_distorted_name("I01_01_05.png") == ("I01", "01", 5)
    assert parse_distorted_name("i25_17_3.bmp") == ("I25", "17", 3)
    assert parse_distorted_name("I01.png") is None


def test_koniq_style_csv_reads_mos_and_sd_and_ignores_other_columns(tmp_path: Path) -> None:
    # The header of KonIQ-10k's koniq10k_scores_and_distributions.csv.
    (tmp_path / "koniq.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n"
        "826373.jpg,0,0,25,73,7,105,3.828571429,0.527836,77.38\n"
        "100.jpg,1,2,3,4,5,15,2.5,0.25,40.1\n"
    )
    records = read_nr_csv(tmp_path / "koniq.csv", "1024x768")
    assert [r.distorted for r in records] == ["1024x768/826373.jpg", "1024x768/100.jpg"]
    assert records[0].mos == pytest.approx(3.828571429) and records[0].std == pytest.approx(
        0.527836
    )
    assert records[0].reference is None and records[0].ref_id == "826373.jpg"


def test_nr_csv_with_only_image_and_mos(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("image,mos\na.png,70.5\n")
    (record,) = read_nr_csv(tmp_path / "s.csv")
    assert (record.distorted, record.mos, record.std) == ("a.png", 70.5, None)


def test_fr_csv_with_dmos_type_and_level(tmp_path: Path) -> None:
    (tmp_path / "fr.csv").write_text(
        "distorted,reference,dmos,distortion_type,level\n"
        "dist/img1_jpeg_3.bmp,refs/img1.bmp,41.2,jpeg,3\n"
        "dist/img2_blur.bmp,refs/img2.bmp,12,,\n"
    )
    a, b = read_fr_csv(tmp_path / "fr.csv", "data")
    assert a.distorted == "data/dist/img1_jpeg_3.bmp" and a.reference == "data/refs/img1.bmp"
    assert (a.mos, a.distortion, a.level, a.ref_id) == (41.2, "jpeg", 3, "IMG1")
    assert (b.distortion, b.level) == (None, None)


def test_kadid_dmos_csv(tmp_path: Path) -> None:
    # The first rows of KADID-10k's dmos.csv.
    (tmp_path / "dmos.csv").write_text(
        "dist_img,ref_img,dmos,var\n"
        "I01_01_01.png,I01.png,4.57,0.496\n"
        "I01_01_02.png,I01.png,4.33,0.869\n"
        "I02_10_05.png,I02.png,1.2,0.0\n"
    )
    records = read_kadid(tmp_path)
    assert [r.distorted for r in records][:1] == ["images/I01_01_01.png"]
    assert records[0].reference == "images/I01.png"
    assert records[1].std == pytest.approx(math.sqrt(0.869))
    assert (records[2].distortion, records[2].level, records[2].ref_id) == ("10", 5, "I02")
    assert records[2].mos == 1.2


def test_tid2013_matches_names_in_any_case(tmp_path: Path) -> None:
    # TID2013 mixes cases: mos_with_names.txt says i01_01_5.bmp and i25_..., references are
    # I01.BMP and i25.bmp on disk.
    (tmp_path / "mos_with_names.txt").write_text("5.51429 i01_01_5.bmp\n4.80000 i25_24_1.bmp\n")
    (tmp_path / "mos_std.txt").write_text("0.13013\n0.2\n")
    _image(tmp_path / "distorted_images" / "i01_01_5.bmp")
    _image(tmp_path / "distorted_images" / "I25_24_1.BMP")
    _image(tmp_path / "reference_images" / "I01.BMP")
    _image(tmp_path / "reference_images" / "i25.bmp")
    a, b = read_tid2013(tmp_path)
    assert (a.distorted, a.reference) == (
        "distorted_images/i01_01_5.bmp",
        "reference_images/I01.BMP",
    )
    assert (a.mos, a.std, a.distortion, a.level, a.ref_id) == (5.51429, 0.13013, "01", 5, "I01")
    assert (b.distorted, b.reference) == (
        "distorted_images/I25_24_1.BMP",
        "reference_images/i25.bmp",
    )
    assert (b.distortion, b.level, b.ref_id) == ("24", 1, "I25")


def test_tid2013_without_std_file(tmp_path: Path) -> None:
    (tmp_path / "mos_with_names.txt").write_text("5.0 i02_03_4.bmp\n")
    _image(tmp_path / "distorted_images" / "i02_03_4.bmp")
    _image(tmp_path / "reference_images" / "I02.BMP")
    (record,) = read_tid2013(tmp_path)
    assert record.std is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("nr.csv", "file,score\na.png,1\n", "needs an 'image'"),
        ("nr.csv", "image,mos\na.png,high\n", "nr.csv:2: mos 'high' is not a number"),
        ("fr.csv", "distorted,mos\na.png,1\n", "'distorted', 'reference' and 'mos'"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path: Path, name: str, text: str, message: str):
    (tmp_path / name).write_text(text)
    reader = read_nr_csv if name == "nr.csv" else read_fr_csv
    with pytest.raises(DataError, match=message):
        reader(tmp_path / name)


def test_tid2013_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mos_with_names.txt' does not exist"):
        read_tid2013(tmp_path)
    (tmp_path / "mos_with_names.txt").write_text("5.0 i02_03_4.bmp\n")
    (tmp_path / "mos_std.txt").write_text("0.1\n0.2\n")
    _image(tmp_path / "distorted_images" / "i02_03_4.bmp")
    _image(tmp_path / "reference_images" / "I01.BMP")
    with pytest.raises(DataError, match="2 values but .* 1 rows"):
        read_tid2013(tmp_path)
    (tmp_path / "mos_std.txt").unlink()
    with pytest.raises(DataError, match="no reference image I02"):
        read_tid2013(tmp_path)
