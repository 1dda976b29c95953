"""Aesthetics label files: AVA's ``AVA.txt``, the official AVA image lists, and a generic CSV.

``AVA.txt`` (Murray et al., "AVA: A large-scale database for aesthetic visual analysis", CVPR
2012) has one image per line, 15 whitespace-separated integers::

    index  image_id  n1 n2 ... n10  tag1  tag2  challenge_id

``n_k`` is the number of votes for score ``k`` (1..10); the image is ``<images>/<image_id>.jpg``.
The generic CSV has a header ``image,score`` (a mean score) or ``image,c1,...,c10`` (vote
counts); ``image`` is a file name under the images folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionzoo.core.io import DataError

NUM_BINS = 10  # scores 1..10
AVA_FIELDS = 2 + NUM_BINS + 3
THRESHOLD = 5.0  # mean score splitting high (≥) from low (<) images, AVA's standard split


@dataclass(frozen=True)
class ScoreRecord:
    """One labelled image: its id, its file name (relative to the images folder), the vote
    counts per score 1..10 (``None`` when only a mean score is known), the mean score and the
    line of the label file it came from."""

    image_id: str
    file_name: str
    votes: tuple[float, ...] | None
    mean: float
    line: int


def vote_mean(votes: np.ndarray) -> float:
    """Mean score ``Σ k·n_k / Σ n_k`` of vote counts ``n_1..n_10``."""
    return float(np.dot(np.arange(1, NUM_BINS + 1), votes) / votes.sum())


def _votes(values: list[float], path: Path, line: int, image_id: str) -> tuple[float, ...]:
    votes = np.asarray(values, dtype=np.float64)
    if (votes < 0).any() or not np.isfinite(votes).all():
        raise DataError(
            f"{path}:{line}: image {image_id!r} has a negative or non-numeric vote count; "
            "vote counts must be whole numbers ≥ 0"
        )
    if votes.sum() == 0:
        raise DataError(
            f"{path}:{line}: image {image_id!r} has zero votes, so it has no score; remove "
            "that row from the label file"
        )
    return tuple(float(v) for v in votes)


def read_ava_txt(path: str | Path, suffix: str = ".jpg") -> list[ScoreRecord]:
    """The rows of an ``AVA.txt`` file as ``ScoreRecord`` (file ``<image_id><suffix>``).

    Malformed rows and rows with zero votes raise a ``DataError`` naming the line and the id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"AVA label file {str(path)!r} does not exist; check data.root/data.labels")
    records = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != AVA_FIELDS:
            raise DataError(
                f"{path}:{line}: expected {AVA_FIELDS} fields (index, image id, 10 vote counts, "
                f"2 tags, challenge id), found {len(fields)}"
            )
        image_id = fields[1]
        try:
            counts = [float(int(v)) for v in fields[2 : 2 + NUM_BINS]]
        except ValueError:
            raise DataError(
                f"{path}:{line}: image {image_id!r}: vote counts must be whole numbers"
            ) from None
        votes = _votes(counts, path, line, image_id)
        mean = vote_mean(np.asarray(votes))
        records.append(ScoreRecord(image_id, f"{image_id}{suffix}", votes, mean, line))
    if not records:
        raise DataError(f"AVA label file {str(path)!r} has no rows")
    return records


def write_ava_txt(path: str | Path, rows: list[tuple[str, list[int], int, int, int]]) -> None:
    """Write ``AVA.txt`` rows ``(image_id, votes[10], tag1, tag2, challenge)``, indexed from 1."""
    lines = [
        " ".join(str(v) for v in (i, image_id, *votes, tag1, tag2, challenge))
        for i, (image_id, votes, tag1, tag2, challenge) in enumerate(rows, start=1)
    ]
    Path(path).write_text("\n".join(lines) + "\n")


def read_score_csv(path: str | Path) -> list[ScoreRecord]:
    """A CSV with header ``image,score`` or ``image,c1,...,c10`` as ``ScoreRecord``; the id of
    an image is its file name."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"score CSV {str(path)!r} does not exist; check data.root/data.labels")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"score CSV {str(path)!r} is empty")
    header = [h.strip().lower() for h in rows[0]]
    counts = [f"c{k}" for k in range(1, NUM_BINS + 1)]
    if header == ["image", "score"]:
        with_votes = False
    elif header == ["image", *counts]:
        with_votes = True
    else:
        raise DataError(
            f"{path}:1: header {','.join(rows[0])!r} is neither 'image,score' nor "
            f"'image,{','.join(counts)}'"
        )
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} columns, found {len(row)}")
        name = row[0].strip()
        try:
            values = [float(v) for v in row[1:]]
        except ValueError:
            raise DataError(f"{path}:{line}: image {name!r}: scores must be numbers") from None
        if with_votes:
            votes = _votes(values, path, line, name)
            records.append(ScoreRecord(name, name, votes, vote_mean(np.asarray(votes)), line))
        else:
            if not np.isfinite(values[0]):
                raise DataError(f"{path}:{line}: image {name!r}: the score is not finite")
            records.append(ScoreRecord(name, name, None, values[0], line))
    if not records:
        raise DataError(f"score CSV {str(path)!r} has no rows")
    return records


def read_id_list(path: str | Path) -> list[str]:
    """Image ids (or file names), one per line, as in the official AVA lists (e.g.
    ``aesthetics_image_lists/generic_ls_train.jpgl``); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image list {str(path)!r} does not exist; check data.splits")
    return [t.strip() for t in path.read_text().splitlines() if t.strip()]
