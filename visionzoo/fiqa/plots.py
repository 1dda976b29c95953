"""EDC figure and pAUC table of several face-quality methods."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from visionzoo.fiqa.edc import EDCCurve  # noqa: E402


def plot_edc(path: Path, curves: Mapping[str, EDCCurve], *, limit: float, title: str = "") -> None:
    """One figure: the FNMR-vs-discard step curve of every method (the ``random`` one dashed),
    the theoretical best of the first curve dotted, and the pAUC limit marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, curve in curves.items():
        style = "--" if name == "random" else "-"
        ax.step(curve.discard, curve.error, where="post", linestyle=style, label=name)
    first = next(iter(curves.values()))
    e0 = first.starting_error
    ax.plot([0, e0], [e0, 0], ":", color="grey", label="theoretical best")
    ax.axvline(limit, color="grey", linewidth=0.8)
    ax.set_xlim(0, min(1.0, max(2 * limit, 0.3)))
    ax.set_xlabel("fraction of mated comparisons discarded")
    ax.set_ylabel("FNMR")
    ax.set_title(title or "Error versus discard characteristic")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_pauc_table(path: Path, rows: list[dict[str, float | str]]) -> str:
    """Write ``rows`` (one per method) as CSV at ``path`` and return them as a Markdown table."""
    keys = list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
