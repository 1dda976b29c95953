"""Image-quality label files: a no-reference CSV, a full-reference CSV, KADID-10k's ``dmos.csv``
and TID2013's ``mos_with_names.txt`` (+ ``mos_std.txt``), read into ``QualityRecord`` rows; and
the TID2013 writer the synthetic generator uses.

- no-reference CSV (KonIQ-10k / SPAQ style): header with ``image`` (or ``image_name``), ``mos``
  and optionally ``std`` (or ``sd``); other columns are ignored, so KonIQ-10k's
  ``koniq10k_scores_and_distributions.csv`` (``image_name, ..., MOS, SD, ...``) reads as it is;
- full-reference CSV: ``distorted,reference,mos`` (or ``dmos``) with optional
  ``distortion_type``, ``level`` and ``std`` columns;
- KADID-10k (Lin et al., QoMEX 2019): ``dmos.csv`` with ``dist_img,ref_img,dmos,var``; images
  in ``images/`` named ``I01_01_05.png`` (reference 01, distortion type 01, level 05);
- TID2013 (Ponomarenko et al., 2015): ``mos_with_names.txt`` lines ``<mos> <name>``,
  ``mos_std.txt`` one standard deviation per line in the same order; ``distorted_images/``
  holds ``i01_01_5.bmp`` (reference 01, type 01, level 5), ``reference_images/`` ``I01.BMP``.
  The case of names differs across the release (``i25.bmp`` beside ``I01.BMP``), so files are
  looked up case-insensitively.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from visionzoo.core.io import DataError

# <ref>_<type>_<level>: KADID-10k "I01_01_05.png", TID2013 "i01_01_5.bmp"
DISTORTED_NAME = re.compile(r"^([a-z]+\d+)_(\d+)_(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class QualityRecord:
    """One rated image: its path relative to the dataset root, its reference's path (``None``
    for no-reference data), the opinion score, its standard deviation (``None`` if unknown), the
    distortion type and level (``None`` if unknown), and the reference id that splits keep
    together (the image itself when there is no reference)."""

    distorted: str
    reference: str | None
    mos: float
    std: float | None
    distortion: str | None
    level: int | None
    ref_id: str


def parse_distorted_name(name: str) -> tuple[str, str, int] | None:
    """``(reference id, distortion type, level)`` of a KADID-10k / TID2013 style file name
    (``I01_01_05.png`` → ``("I01", "01", 5)``; the id is upper-cased), or ``None``."""
    m = DISTORTED_NAME.match(Path(name).stem)
    return (m[1].upper(), m[2], int(m[3])) if m else None


def case_insensitive_files(folder: Path) -> dict[str, str]:
    """Lower-cased file name → the name on disk, for the files of ``folder``."""
    if not folder.is_dir():
        raise DataError(f"image folder {str(folder)!r} does not exist; check data.root")
    return {p.name.lower(): p.name for p in folder.iterdir() if p.is_file()}


def _number(value: str, path: Path, line: int, what: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise DataError(f"{path}:{line}: {what} {value!r} is not a number") from None
    if not math.isfinite(out):
        raise DataError(f"{path}:{line}: {what} {value!r} is not finite")
    return out


def _read_csv(path: Path, kind: str) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """Header (lower-cased name → column) and the non-empty rows with their line numbers."""
    if not path.is_file():
        raise DataError(f"{kind} {str(path)!r} does not exist; check data.root/data.labels")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{kind} {str(path)!r} is empty")
    header = {h.strip().lower(): i for i, h in enumerate(rows[0])}
    body = [(i, r) for i, r in enumerate(rows[1:], start=2) if any(v.strip() for v in r)]
    if not body:
        raise DataError(f"{kind} {str(path)!r} has a header but no rows")
    return header, body


def _column(header: dict[str, int], names: tuple[str, ...], path: Path) -> int | None:
    return next((header[n] for n in names if n in header), None)


def _cell(row: list[str], col: int | None, path: Path, line: int) -> str:
    if col is None:
        return ""
    if col >= len(row):
        raise DataError(f"{path}:{line}: the row has {len(row)} columns, the header more")
    return row[col].strip()


def read_nr_csv(path: str | Path, images: str = "") -> list[QualityRecord]:
    """A no-reference CSV (``image,mos[,std]``) as records; image paths are ``images/<image>``."""
    path = Path(path)
    header, body = _read_csv(path, "no-reference score CSV")
    image = _column(header, ("image", "image_name"), path)
    mos = _column(header, ("mos",), path)
    std = _column(header, ("std", "sd"), path)
    if image is None or mos is None:
        raise DataError(
            f"{path}:1: the header needs an 'image' (or 'image_name') and a 'mos' column; "
            f"found {', '.join(header)}"
        )
    records = []
    for line, row in body:
        name = _cell(row, image, path, line)
        s = _cell(row, std, path, line)
        records.append(
            QualityRecord(
                distorted=str(Path(images) / name),
                reference=None,
                mos=_number(_cell(row, mos, path, line), path, line, "mos"),
                std=_number(s, path, line, "std") if s else None,
                distortion=None,
                level=None,
                ref_id=name,
            )
        )
    return records


def read_fr_csv(path: str | Path, images: str = "") -> list[QualityRecord]:
    """A full-reference CSV (``distorted,reference,mos|dmos[,distortion_type,level,std]``);
    both paths are relative to ``images`` under the dataset root."""
    path = Path(path)
    header, body = _read_csv(path, "full-reference score CSV")
    dist, ref = header.get("distorted"), header.get("reference")
    score = _column(header, ("mos", "dmos"), path)
    if dist is None or ref is None or score is None:
        raise DataError(
            f"{path}:1: the header needs 'distorted', 'reference' and 'mos' (or 'dmos') "
            f"columns; found {', '.join(header)}"
        )
    kind, level = header.get("distortion_type"), header.get("level")
    std = _column(header, ("std", "sd"), path)
    records = []
    for line, row in body:
        reference = _cell(row, ref, path, line)
        lv, s = _cell(row, level, path, line), _cell(row, std, path, line)
        records.append(
            QualityRecord(
                distorted=str(Path(images) / _cell(row, dist, path, line)),
                reference=str(Path(images) / reference),
                mos=_number(_cell(row, score, path, line), path, line, "score"),
                std=_number(s, path, line, "std") if s else None,
                distortion=_cell(row, kind, path, line) or None,
                level=int(_number(lv, path, line, "level")) if lv else None,
                ref_id=Path(reference).stem.upper(),
            )
        )
    return records


def read_kadid(
    root: str | Path, labels: str = "dmos.csv", images: str = "images"
) -> list[QualityRecord]:
    """KADID-10k's ``dmos.csv`` (``dist_img,ref_img,dmos,var``) as records; ``std`` is
    √var, type and level come from the distorted file's name."""
    root = Path(root)
    path = root / labels
    header, body = _read_csv(path, "KADID-10k label file")
    need = ("dist_img", "ref_img", "dmos")
    if any(n not in header for n in need):
        raise DataError(
            f"{path}:1: KADID-10k's dmos.csv has columns dist_img,ref_img,dmos,var; found "
            f"{', '.join(header)}"
        )
    var = header.get("var")
    records = []
    for line, row in body:
        name = _cell(row, header["dist_img"], path, line)
        parsed = parse_distorted_name(name)
        if parsed is None:
            raise DataError(
                f"{path}:{line}: distorted image {name!r} is not named like I01_01_05.png "
                "(reference_type_level)"
            )
        reference = _cell(row, header["ref_img"], path, line)
        v = _cell(row, var, path, line)
        records.append(
            QualityRecord(
                distorted=f"{images}/{name}",
                reference=f"{images}/{reference}",
                mos=_number(_cell(row, header["dmos"], path, line), path, line, "dmos"),
                std=math.sqrt(max(_number(v, path, line, "var"), 0.0)) if v else None,
                distortion=parsed[1],
                level=parsed[2],
                ref_id=Path(reference).stem.upper(),
            )
        )
    return records


def read_tid2013(
    root: str | Path,
    labels: str = "mos_with_names.txt",
    stds: str | None = "mos_std.txt",
    distorted: str = "distorted_images",
    reference: str = "reference_images",
) -> list[QualityRecord]:
    """TID2013's ``mos_with_names.txt`` (and ``mos_std.txt`` when present) as records; the
    reference of ``i01_01_5.bmp`` is the file of ``reference_images/`` named ``I01.<ext>`` in
    any case."""
    root = Path(root)
    path = root / labels
    if not path.is_file():
        raise DataError(f"TID2013 label file {str(path)!r} does not exist; check data.root")
    lines = [(i, t.split()) for i, t in enumerate(path.read_text().splitlines(), 1) if t.strip()]
    if not lines:
        raise DataError(f"TID2013 label file {str(path)!r} has no rows")
    std_values: list[float | None] = [None] * len(lines)
    std_path = root / stds if stds else None
    if std_path is not None and std_path.is_file():
        raw = [t.strip() for t in std_path.read_text().splitlines() if t.strip()]
        if len(raw) != len(lines):
            raise DataError(
                f"{std_path} has {len(raw)} values but {path} has {len(lines)} rows; they must "
                "be in the same order, one per image"
            )
        std_values = [_number(v, std_path, i, "std") for i, v in enumerate(raw, 1)]
    dist_files = case_insensitive_files(root / distorted)
    ref_files = case_insensitive_files(root / reference)
    refs_by_id = {Path(n).stem.upper(): n for n in ref_files.values()}
    records = []
    for (line, fields), std in zip(lines, std_values, strict=True):
        if len(fields) != 2:
            raise DataError(f"{path}:{line}: expected '<mos> <image name>', found {fields}")
        name = fields[1]
        parsed = parse_distorted_name(name)
        if parsed is None:
            raise DataError(
                f"{path}:{line}: {name!r} is not named like i01_01_5.bmp (reference_type_level)"
            )
        on_disk = dist_files.get(name.lower())
        if on_disk is None:
            raise DataError(f"{path}:{line}: {name!r} is not in {str(root / distorted)!r}")
        ref_id, kind, level = parsed
        ref_name = refs_by_id.get(ref_id)
        if ref_name is None:
            raise DataError(
                f"{path}:{line}: no reference image {ref_id}.* in {str(root / reference)!r}"
            )
        records.append(
            QualityRecord(
                distorted=f"{distorted}/{on_disk}",
                reference=f"{reference}/{ref_name}",
                mos=_number(fields[0], path, line, "mos"),
                std=std,
                distortion=kind,
                level=level,
                ref_id=ref_id,
            )
        )
    return records


def write_tid2013(root: Path, rows: list[tuple[str, float, float]]) -> None:
    """Write ``mos_with_names.txt`` and ``mos_std.txt`` for ``(distorted name, mos, std)``
    rows (the images themselves are the caller's)."""
    (root / "mos_with_names.txt").write_text("".join(f"{m:.5f} {n}\n" for n, m, _ in rows))
    (root / "mos_std.txt").write_text("".join(f"{s:.5f}\n" for _, _, s in rows))
