"""Name → generator function for synthetic datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

GENERATORS: dict[str, Callable[..., None]] = {}


def register_generator(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fn(out_dir: Path, **params)`` that writes a dataset into ``out_dir``."""

    def decorator(fn: Callable[..., None]) -> Callable[..., None]:
        GENERATORS[name] = fn
        return fn

    return decorator


def write_split(out_dir: Path, split: str, stems: list[str]) -> None:
    """Write a split file, one stem per line (the VOC ``ImageSets`` convention)."""
    (out_dir / "splits").mkdir(exist_ok=True)
    (out_dir / "splits" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
