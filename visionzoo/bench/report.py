"""Markdown tables and headers of the benchmark reports, and the JSON + Markdown files a suite
writes."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def md_header(title: str, result: dict[str, Any]) -> list[str]:
    """Title, command, machine and load: the lines every report starts with."""
    m = result["machine"]
    return [
        f"# {title}",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['torch_threads']} torch threads), "
        f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}, pytorch-lightning "
        f"{m['pytorch_lightning']}, timm {m['timm']}.  ",
        f"Load average at start / end: {result['load_average_start']} / "
        f"{result['load_average_end']}; suite runtime {result['runtime_s']:.0f} s.",
        "",
    ]


def raw_table(rows_by_side: dict[str, list[dict[str, Any]]]) -> str:
    """Every timed and warm-up run of each side, with the load it ran under."""
    rows = [
        [
            side,
            r["repeat"],
            "yes" if r["warmup"] else "",
            r["images"],
            r["seconds"],
            r["images_per_s"],
            r.get("load_1min", ""),
        ]
        for side, rs in rows_by_side.items()
        for r in rs
    ]
    return md_table(
        ["side", "repeat", "warm-up", "images", "seconds", "img/s", "load (1 min)"], rows
    )


def write_result(
    out: Path, suite: str, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str]
) -> tuple[Path, Path]:
    """``<out>/<suite>.json`` (everything, raw timings included) and ``<out>/<suite>.md``."""
    json_path, md_path = out / f"{suite}.json", out / f"{suite}.md"
    json_path.write_text(json.dumps(result, indent=1, default=str))
    md_path.write_text(markdown(result) + "\n")
    return json_path, md_path
