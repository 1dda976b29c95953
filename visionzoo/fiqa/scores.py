"""Precomputed scores from other tools, so their quality (or comparison) scores are evaluated on
the same footing: a CSV with a path column (``path``/``file``/``image``) and a score column
(``quality``/``score``), or JSON (``{path: score}`` or a list of ``{"file": ..., "quality": ...}``
records, as ``predict.py task=fiqa`` writes); comparison scores: a CSV ``path1,path2,same,score``.
Relative paths are relative to the dataset root."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from visionzoo.core.io import DataError

PATH_COLUMNS = ("path", "file", "image", "file_name")
SCORE_COLUMNS = ("quality", "score")


def path_key(path: str | Path, root: Path) -> str:
    """A dataset-independent key of an image path: relative to ``root`` (posix) when inside
    it, else the absolute path."""
    p = Path(path)
    p = p if p.is_absolute() else root / p
    absolute = Path(os.path.abspath(p))
    try:
        return absolute.relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        return absolute.as_posix()


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise DataError(f"{path}:1: header needs one of the columns {', '.join(names)}")


def read_quality_scores(path: str | Path, root: Path) -> dict[str, float]:
    """``{path_key: quality}`` from a CSV or JSON file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"quality scores file {str(path)!r} does not exist; check the path")
    out: dict[str, float] = {}
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        items = data.items() if isinstance(data, dict) else None
        if items is None and isinstance(data, list):
            try:
                items = [
                    (next(r[c] for c in PATH_COLUMNS if c in r), r.get("quality", r.get("score")))
                    for r in data
                ]
            except (StopIteration, TypeError, AttributeError):
                items = None
        if items is None:
            raise DataError(
                f"{path}: expected {{path: quality}} or a list of {{file, quality}} records"
            )
        for name, value in items:
            if not isinstance(value, int | float):
                raise DataError(f"{path}: quality of {name!r} is {value!r}, not a number")
            out[path_key(name, root)] = float(value)
        return out
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{path}: empty file; expected a header such as 'path,quality'")
    header = [c.strip().lower() for c in rows[0]]
    pc, sc = _column(header, PATH_COLUMNS, path), _column(header, SCORE_COLUMNS, path)
    for lineno, row in enumerate(rows[1:], 2):
        if not row:
            continue
        try:
            out[path_key(row[pc].strip(), root)] = float(row[sc])
        except (IndexError, ValueError):
            raise DataError(f"{path}:{lineno}: expected a path and a number, got {row!r}") from None
    return out


def read_similarity_scores(path: str | Path, root: Path) -> list[tuple[str, str, bool, float]]:
    """Comparisons ``(key1, key2, mated, score)`` from a ``path1,path2,same,score`` CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"similarity scores file {str(path)!r} does not exist; check the path")
    out = []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or (lineno == 1 and row[0].strip().lower() == "path1"):
                continue
            try:
                same = row[2].strip().lower() in ("1", "true", "yes")
                out.append((path_key(row[0].strip(), root), path_key(row[1].strip(), root),
                            same, float(row[3])))  # fmt: skip
            except (IndexError, ValueError):
                raise DataError(
                    f"{path}:{lineno}: expected 'path1,path2,same,score', got {','.join(row)!r}"
                ) from None
    return out
