"""AVA.txt, score-CSV and id-list readers: values, unequal vote totals and row-naming errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visionzoo.aesthetics.formats import read_ava_txt, read_id_list, read_score_csv
from visionzoo.core.io import DataError

ROWS = [
    "1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396",
    "2 953958 10 7 15 26 26 21 10 8 1 2 1 21 1396",
    "3 954184 0 0 4 8 41 56 10 3 4 0 0 0 1396",
]


def test_ava_rows_give_votes_and_means(tmp_path: Path) -> None:
    (tmp_path / "AVA.txt").write_text("\n".join(ROWS) + "\n")
    records = read_ava_txt(tmp_path / "AVA.txt")
    assert [r.image_id for r in records] == ["953619", "953958", "954184"]
    assert records[0].file_name == "953619.jpg" and records[2].line == 3
    for row, record in zip(ROWS, records, strict=True):
        votes = np.array(row.split()[2:12], float)
        assert record.votes == tuple(votes)
        assert record.mean == pytest.approx(np.average(np.arange(1, 11), weights=votes))
    assert sum(records[0].votes) != sum(records[1].votes)  # unequal totals, each its own mean


def test_zero_vote_row_names_line_and_id(tmp_path: Path) -> None:
    path = tmp_path / "AVA.txt"
    path.write_text("\n".join([ROWS[0], "2 777 0 0 0 0 0 0 0 0 0 0 1 2 3", ROWS[2]]))
    with pytest.raises(DataError, match=r"AVA.txt:2: image '777' has zero votes"):
        read_ava_txt(path)


def test_malformed_ava_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "AVA.txt"
    path.write_text(ROWS[0] + "\n3 954184 0 0 4\n")
    with pytest.raises(DataError, match=r"AVA.txt:2: expected 15 fields.*found 5"):
        read_ava_txt(path)


def test_csv_with_mean_scores_or_vote_counts(tmp_path: Path) -> None:
    means = tmp_path / "means.csv"
    means.write_text("image,score\na.jpg,6.5\nb.png,3.25\n")
    got = read_score_csv(means)
    assert [(r.file_name, r.mean, r.votes) for r in got] == [
        ("a.jpg", 6.5, None),
        ("b.png", 3.25, None),
    ]
    votes = tmp_path / "votes.csv"
    header = ",".join(f"c{k}" for k in range(1, 11))
    votes.write_text(f"image,{header}\na.jpg,0,0,0,0,1,3,0,0,0,0\n")
    record = read_score_csv(votes)[0]
    assert record.mean == pytest.approx((5 * 1 + 6 * 3) / 4)
    votes.write_text(f"image,{header}\na.jpg,0,0,0,0,1,3,0,0,0,0\nz.jpg,0,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"votes.csv:3: image 'z.jpg' has zero votes"):
        read_score_csv(votes)


def test_csv_with_an_unknown_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("file,mos\na.jpg,3\n")
    with pytest.raises(DataError, match="neither 'image,score'"):
        read_score_csv(path)


def test_id_list_skips_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "l.jpgl").write_text("953619\n\n954184\n")
    assert read_id_list(tmp_path / "l.jpgl") == ["953619", "954184"]
