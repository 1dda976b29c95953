"""Precomputed quality scores: CSV and both JSON layouts read to the same keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visionzoo.core.io import DataError
from visionzoo.fiqa.scores import read_quality_scores


def test_csv_and_json_layouts_agree(tmp_path: Path) -> None:
    root = tmp_path / "data"
    expected = {"a/1.png": 0.5, "b/2.png": 2.0}
    (tmp_path / "q.csv").write_text(f"image,quality\na/1.png,0.5\n{root / 'b/2.png'},2\n")
    (tmp_path / "q.json").write_text(json.dumps(expected))
    records = [{"file": str(root / k), "quality": v} for k, v in expected.items()]
    (tmp_path / "r.json").write_text(json.dumps(records))
    for name in ("q.csv", "q.json", "r.json"):
        assert read_quality_scores(tmp_path / name, root) == expected, name


def test_bad_rows_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text("path,score\na.png,high\n")
    with pytest.raises(DataError, match=r"q.csv:2: expected a path and a number"):
        read_quality_scores(tmp_path / "q.csv", tmp_path)
    (tmp_path / "n.csv").write_text("name,value\n")
    with pytest.raises(DataError, match="header needs one of the columns path"):
        read_quality_scores(tmp_path / "n.csv", tmp_path)
