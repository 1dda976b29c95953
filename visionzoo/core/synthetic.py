"""Deterministic synthetic datasets written in a family's real on-disk format.

A generator writes into a temporary folder that is renamed into place only when complete, with
a ``synthetic.json`` recording its parameters; a cache whose parameters differ is rebuilt. The
family's normal reader then reads the folder, so synthetic and real data share one code path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from visionzoo.registry import get_generator

STAMP = "synthetic.json"


def default_cache_dir() -> Path:
    """``$VISIONZOO_CACHE`` or ``~/.cache/visionzoo``."""
    return Path(os.environ.get("VISIONZOO_CACHE", "~/.cache/visionzoo")).expanduser()


def ensure_synthetic(name: str, root: str | Path, **params: Any) -> Path:
    """Make sure ``root`` holds generator ``name``'s output for ``params``; return ``root``.

    Processes that ask at once (DDP ranks, parallel test runs) take turns on a lock of the
    folder holding ``root``: the first one writes the dataset, the others find its stamp."""
    import fcntl

    generator = get_generator(name)  # raises with the list of generators
    root = Path(root).expanduser()
    wanted = {"name": name, **params}
    stamp = root / STAMP

    def current() -> bool:
        return stamp.is_file() and json.loads(stamp.read_text()) == wanted

    if current():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(root.parent, os.O_RDONLY)  # the parent folder itself: no lock file left
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if current():  # written by another process while this one waited
            return root
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            generator(tmp, **params)
            (tmp / STAMP).write_text(json.dumps(wanted, indent=1))
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(lock)  # releases the lock
    return root


def write_split(out_dir: Path, split: str, stems: list[str]) -> None:
    """Write a split file, one stem per line (the VOC ``ImageSets`` convention)."""
    (out_dir / "splits").mkdir(exist_ok=True)
    (out_dir / "splits" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
