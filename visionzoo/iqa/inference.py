"""What ``predict.py`` needs to score files: pairing distorted images with references, reading
video frames, and the scores CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from visionzoo.core.io import IMAGE_SUFFIXES, DataError, list_images
from visionzoo.iqa.formats import parse_distorted_name

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".y4m")


def pair_references(files: list[Path], reference: str | Path) -> list[Path]:
    """The reference of each distorted file: ``reference`` itself when it is an image file;
    when it is a folder, the file of the same name, else the one named after the distorted
    name's reference id (``i01_01_5.bmp`` → ``I01.*``, any case, as TID2013 / KADID-10k)."""
    reference = Path(reference)
    if reference.is_file():
        if reference.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"reference={str(reference)!r} is not an image file")
        return [reference] * len(files)
    if not reference.is_dir():
        raise DataError(f"reference={str(reference)!r} is neither an image nor a folder")
    candidates = list_images(reference)
    by_name = {p.name.lower(): p for p in candidates}
    by_stem = {p.stem.upper(): p for p in candidates}
    out = []
    for f in files:
        parsed = parse_distorted_name(f.name)
        found = by_name.get(f.name.lower()) or (by_stem.get(parsed[0]) if parsed else None)
        if found is None:
            raise DataError(
                f"no reference for {f.name} in {str(reference)!r}: name it like the distorted "
                "image, or like its reference id (I01.png for i01_01_5.bmp)"
            )
        out.append(found)
    return out


def read_video_frames(
    path: str | Path, *, every: int = 1, max_frames: int | None = None
) -> list[np.ndarray]:
    """Frames of a video file (``cv2.VideoCapture``) or of a folder of frame images (natural
    order), as (H, W, 3) uint8 RGB; every ``every``-th frame, at most ``max_frames``."""
    path = Path(path)
    if every < 1:
        raise ValueError(f"every={every}: keep every n-th frame with n ≥ 1")
    if path.is_dir():
        from visionzoo.core.io import read_rgb

        frames = [read_rgb(p) for p in list_images(path)[::every][:max_frames]]
    else:
        import cv2

        if not path.is_file():
            raise DataError(f"video {str(path)!r} does not exist")
        capture = cv2.VideoCapture(str(path))
        frames, i = [], 0
        try:
            while max_frames is None or len(frames) < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                if i % every == 0:
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                i += 1
        finally:
            capture.release()
    if not frames:
        raise DataError(f"no frames could be read from {str(path)!r}; is it a video / frames?")
    return frames


def write_scores_csv(path: Path, records: list[dict]) -> None:
    """``file,reference,score`` (plus ``frames`` for videos), one row per record."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reference", "score", "frames"])
        for r in records:
            writer.writerow(
                [r["file"], r.get("reference") or "", f"{r['score']:.6g}", r.get("frames", "")]
            )
