"""Face-verification pairs: LFW ``pairs.txt``, a ``path1,path2,same`` CSV, and balanced pairs
drawn from identity groups (with a CLI that writes them for any one-folder-per-person set).

LFW's format (Huang et al. 2007, "Labeled Faces in the Wild", README of the pairs files): a
header ``folds<TAB>pairs_per_class`` (or one number ``pairs_per_class``), then per fold
``pairs_per_class`` same lines ``name n1 n2`` followed by as many different lines
``name1 n1 name2 n2``; image ``n`` of ``name`` is ``<root>/<name>/<name>_<nnnn>.jpg``.

Usage: ``python -m visionzoo.recognition.pairs <identity_folder> <out.csv> [--num-same N]
[--seed S]``.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

import numpy as np

from visionzoo.core.io import DataError, list_images, natural_key

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


class Pair(NamedTuple):
    """Two image paths and whether they show the same identity."""

    path1: str
    path2: str
    same: bool


def _check_exists(pairs: list[Pair], where: list[str]) -> None:
    for pair, line in zip(pairs, where, strict=True):
        for p in (pair.path1, pair.path2):
            if not os.path.isfile(p):
                raise DataError(f"{line}: image {p!r} does not exist; check the images root")


def read_lfw_pairs(path: str | Path, root: str | Path, *, check_exists: bool = True) -> list[Pair]:
    """Read an LFW-style ``pairs.txt``; images are ``root/<name>/<name>_<nnnn>.jpg``.

    The header's count is checked (``folds * 2 * n`` lines, or ``folds * n`` for files whose
    header gives the pair total per fold) so a truncated file is caught."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise DataError(f"pairs file {str(path)!r} does not exist; check the path")
    lines = [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, parts) for n, parts in lines if parts]
    if not lines:
        raise DataError(f"{path}: empty pairs file; expected LFW's 'folds<TAB>pairs' header")
    _, header = lines[0]
    if not 1 <= len(header) <= 2 or not all(h.isdigit() for h in header):
        raise DataError(
            f"{path}:1: expected a header '<folds> <pairs per class>' or '<pairs per class>', got "
            f"{' '.join(header)!r}"
        )
    folds, per = (1, int(header[0])) if len(header) == 1 else map(int, header)
    body = lines[1:]
    if len(body) not in (folds * 2 * per, folds * per):
        raise DataError(
            f"{path}: header '{' '.join(header)}' announces {folds * 2 * per} pairs but the file "
            f"has {len(body)}; the file is truncated or its header is wrong"
        )

    def image(name: str, number: str, lineno: int) -> str:
        if not number.isdigit():
            raise DataError(f"{path}:{lineno}: image number {number!r} is not an integer")
        return str(root / name / f"{name}_{int(number):04d}.jpg")

    pairs, where = [], []
    for lineno, parts in body:
        if len(parts) == 3:
            name, n1, n2 = parts
            pairs.append(Pair(image(name, n1, lineno), image(name, n2, lineno), True))
        elif len(parts) == 4:
            a, n1, b, n2 = parts
            pairs.append(Pair(image(a, n1, lineno), image(b, n2, lineno), False))
        else:
            raise DataError(
                f"{path}:{lineno}: expected 'name n1 n2' (same) or 'name1 n1 name2 n2' "
                f"(different), got {' '.join(parts)!r}"
            )
        where.append(f"{path}:{lineno}")
    if check_exists:
        _check_exists(pairs, where)
    return pairs


def _parse_same(value: str) -> bool | None:
    value = value.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def read_pairs_csv(path: str | Path, *, check_exists: bool = True) -> list[Pair]:
    """Read ``path1,path2,same`` rows (an optional header row; ``same`` in 0/1/true/false).
    Relative paths are relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file {str(path)!r} does not exist; check the path")
    base = path.parent
    pairs, where = [], []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row):
                continue
            same = _parse_same(row[2]) if len(row) == 3 else None
            if same is None:
                if lineno == 1 and not pairs:  # a header row
                    continue
                raise DataError(
                    f"{path}:{lineno}: expected 'path1,path2,same' with same in 0/1/true/false, "
                    f"got {','.join(row)!r}"
                )
            p1, p2 = (str(base / c.strip()) for c in row[:2])  # absolute paths stay absolute
            pairs.append(Pair(p1, p2, same))
            where.append(f"{path}:{lineno}")
    if check_exists:
        _check_exists(pairs, where)
    return pairs


def write_pairs_csv(
    path: str | Path, pairs: Sequence[Pair], root: str | Path | None = None
) -> None:
    """Write ``pairs`` as ``path1,path2,same`` (with that header) with paths relative to
    ``root`` (default: the CSV's folder, where ``read_pairs_csv`` resolves them). Pair paths
    may be absolute (written relative to ``root``, with ``..`` where needed) or already
    relative to ``root`` (written as they are)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent

    def rel(p: str) -> str:
        if not os.path.isabs(p):
            return Path(p).as_posix()
        try:
            return Path(os.path.relpath(p, root.absolute())).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return str(p)

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path1", "path2", "same"])
        for p in pairs:
            writer.writerow([rel(p.path1), rel(p.path2), int(bool(p.same))])


def _unrank_pairs(n: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(i, j)``, ``i < j``, at positions ``ranks`` of ``combinations(range(n), 2)``."""
    starts = np.arange(n) * n - np.arange(n) * (np.arange(n) + 1) // 2  # rank of (i, i + 1)
    i = np.searchsorted(starts, ranks, side="right") - 1
    return i, ranks - starts[i] + i + 1


def balanced_pairs(
    groups: dict[str, list[str]], *, num_same: int | None = None, seed: int = 0
) -> list[Pair]:
    """Same-identity pairs (all of them, or ``num_same`` drawn uniformly without repetition)
    and as many different-identity pairs drawn uniformly without repetition, shuffled together.

    ``groups`` maps an identity to its image paths; identities are taken in sorted order so the
    result depends only on ``groups``' content and ``seed``."""
    names = sorted(groups)
    items = [groups[n] for n in names]
    sizes = np.array([len(v) for v in items], np.int64)
    counts = sizes * (sizes - 1) // 2
    total_same = int(counts.sum())
    rng = np.random.default_rng(seed)
    if num_same is None:
        same = [Pair(a, b, True) for v in items for a, b in combinations(v, 2)]
    else:
        if not 0 <= num_same <= total_same:
            raise ValueError(
                f"num_same={num_same} but the identities allow {total_same} same pairs; "
                "lower num_same or pass None for all of them"
            )
        ranks = np.sort(rng.choice(total_same, size=num_same, replace=False))
        group_of = np.searchsorted(np.cumsum(counts), ranks, side="right")
        same = []
        for g in np.unique(group_of):
            local = ranks[group_of == g] - (np.cumsum(counts)[g] - counts[g])
            i, j = _unrank_pairs(int(sizes[g]), local)
            same += [Pair(items[g][a], items[g][b], True) for a, b in zip(i, j, strict=True)]
    different = _different_pairs(items, sizes, len(same), rng)
    pairs = same + different
    order = rng.permutation(len(pairs))
    return [pairs[k] for k in order]


def _different_pairs(
    items: list[list[str]], sizes: np.ndarray, wanted: int, rng: np.random.Generator
) -> list[Pair]:
    """``wanted`` distinct unordered cross-identity pairs, uniformly: draw image pairs,
    reject same-identity ones and repeats (every remaining pair is equally likely)."""
    flat = [p for v in items for p in v]
    owner = np.repeat(np.arange(len(items)), sizes)
    m = len(flat)
    available = (m * m - int((sizes * sizes).sum())) // 2
    if wanted > available:
        raise ValueError(
            f"{wanted} different-identity pairs wanted but only {available} exist; "
            "add identities or lower num_same"
        )
    if wanted > available // 2:  # dense: rejection would stall, enumerate instead
        cand = [(a, b) for a, b in combinations(range(m), 2) if owner[a] != owner[b]]
        chosen = rng.choice(len(cand), size=wanted, replace=False)
        return [Pair(flat[cand[k][0]], flat[cand[k][1]], False) for k in sorted(chosen)]
    seen: dict[tuple[int, int], None] = {}
    while len(seen) < wanted:
        a, b = rng.integers(0, m, size=(2, 2 * (wanted - len(seen)) + 16))
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if owner[x] != owner[y]:
                key = (x, y) if x < y else (y, x)
                if key not in seen:
                    seen[key] = None
                    if len(seen) == wanted:
                        break
    return [Pair(flat[x], flat[y], False) for x, y in seen]


def identity_folders(folder: Path, select: str | None = None) -> dict[str, list[Path]]:
    """``{identity: image files}`` of the sub-folders of ``folder`` (one folder per person),
    in natural order (``s2`` before ``s10``); ``select`` is a slice ``"a:b"`` of that order."""
    if not folder.is_dir():
        raise DataError(
            f"identity folder root {str(folder)!r} does not exist; set data.root (and the "
            "set's path) to the folder holding one sub-folder per person"
        )
    people = sorted((p for p in folder.iterdir() if p.is_dir()), key=natural_key)
    if select:
        try:
            start, stop = (int(x) if x else None for x in select.split(":"))
        except ValueError as err:
            raise DataError(f"identities={select!r} must be a slice 'a:b' (e.g. '0:30')") from err
        people = people[start:stop]
    groups = {p.name: list_images(p) for p in people}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise DataError(
            f"no identity sub-folders with images in {str(folder)!r}"
            + (f" (identities={select!r})" if select else "")
            + "; expected <root>/<person>/<image> files"
        )
    return groups


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: write a balanced pairs CSV for an identity-folder set."""
    parser = argparse.ArgumentParser(
        prog="python -m visionzoo.recognition.pairs",
        description="Write a balanced path1,path2,same CSV for a one-folder-per-person set.",
    )
    parser.add_argument("identity_folder", type=Path)
    parser.add_argument("out_csv", type=Path)
    parser.add_argument("--num-same", type=int, default=None, help="default: every same pair")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    groups = {
        k: [str(f) for f in v] for k, v in identity_folders(Path(args.identity_folder)).items()
    }
    pairs = balanced_pairs(groups, num_same=args.num_same, seed=args.seed)
    absolute = [Pair(os.path.abspath(p.path1), os.path.abspath(p.path2), p.same) for p in pairs]
    write_pairs_csv(args.out_csv, absolute)  # relative to the CSV, wherever it is written
    print(f"wrote {len(pairs)} pairs ({len(pairs) // 2} same) to {args.out_csv}")


if __name__ == "__main__":
    main()
