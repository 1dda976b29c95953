"""Two processes (DDP ranks, parallel runs) asking for the same synthetic dataset at once: one
writes it, the other waits and reads it, and nobody deletes a folder another is reading."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from visionzoo.core.synthetic import ensure_synthetic
from visionzoo.registry import register_generator

CALLS: list[int] = []


@register_generator("core_test_slow")
def slow_generator(out_dir: Path, *, n: int) -> None:
    CALLS.append(n)
    time.sleep(0.5)  # long enough for the second caller to arrive mid-write
    for i in range(n):
        (out_dir / f"{i}.txt").write_text(str(i))


def test_concurrent_callers_generate_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(ensure_synthetic("core_test_slow", root, n=3))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CALLS == [3]
    assert results == [root, root]
    assert sorted(p.name for p in root.glob("*.txt")) == ["0.txt", "1.txt", "2.txt"]
    ensure_synthetic("core_test_slow", root, n=4)  # other parameters: rebuilt
    assert CALLS == [3, 4] and len(list(root.glob("*.txt"))) == 4
