"""Image quality in the benchmarks: the ``iqa`` suite times our classical metrics against piq's
on the same batch of 512×384 images, side by side in alternating rounds.

Both sides get the same tensors and equivalent settings: SSIM and MS-SSIM on the luma channel
(11×11 Gaussian, σ = 1.5; SSIM with ssim.m's automatic downsampling, which piq's
``downsample=True`` also implements), VSI on RGB. piq has no NIQE (ours runs alone). piq's
BRISQUE downloads its SVR (the official LIVE model) on first use; when torch's hub cache does
not hold it, piq's code gets the same model's support vectors from our converted copy. The
images are the TID2013 calibration pairs when ``../shared`` is there
(repeated to fill the batch), else seeded textures of that size.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionzoo.bench.cases import FamilyBench, Suite
from visionzoo.bench.harness import REPO, Measurement, alternate, paired_ratio, summarize, sync
from visionzoo.bench.report import md_header, md_table, raw_table
from visionzoo.core.io import read_rgb
from visionzoo.iqa.classical import brisque, ms_ssim, niqe, ssim, vsi
from visionzoo.iqa.classical.brisque import PARAMS as BRISQUE_PARAMS
from visionzoo.iqa.classical.color import to_channels

CALIBRATION = REPO / ".." / "shared" / "data" / "iqa_calibration"
METRICS = ("ssim", "ms_ssim", "vsi", "niqe", "brisque")


def _images(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(distorted, reference) (B, 3, H, W) in [0, 1], and where they came from."""
    names = sorted(p.name for p in (CALIBRATION / "dist_dir").glob("*.bmp"))
    h, w = size
    if names and (h, w) == (384, 512):
        pick = [names[i % len(names)] for i in range(batch)]

        def load(folder: str) -> torch.Tensor:
            arrays = [read_rgb(CALIBRATION / folder / n) for n in pick]
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255

        return load("dist_dir"), load("ref_dir"), "TID2013 calibration pairs"
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(batch, 3, h, w, generator=g)
    dist = (ref + 0.1 * torch.randn(batch, 3, h, w, generator=g)).clamp(0, 1)
    return dist, ref, "seeded noise textures"


def _piq_brisque_cached() -> bool:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / "brisque_svm_weights.pt"
    return hub.is_file()


def _piq_brisque_offline(dist: torch.Tensor, model: dict[str, np.ndarray]) -> torch.Tensor:
    """piq's BRISQUE with the official LIVE SVR handed to it: piq downloads the same model
    (its ``gamma`` and ``rho`` are the MATLAB model's) from GitHub, which an offline machine
    cannot reach. The support vectors and coefficients come from our converted copy of that
    model; the time is piq's code's either way."""
    piq_brisque = importlib.import_module("piq.brisque")  # the module (``piq.brisque`` is
    # also the function, which the package's namespace exports under the same name)

    def load_url(url: str, map_location: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        # float32, as in piq's weights file (its features are float32)
        coef = torch.as_tensor(model["dual_coef"], dtype=torch.float32, device=map_location)
        sv = torch.as_tensor(model["support_vectors"], dtype=torch.float32, device=map_location)
        return coef, sv

    real = piq_brisque.load_url
    piq_brisque.load_url = load_url
    try:
        return piq_brisque.brisque(dist, data_range=1.0, reduction="none")
    finally:
        piq_brisque.load_url = real


def _sides(metric: str, dist: torch.Tensor, ref: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """The calls each side makes for one metric (ours first; piq where it has the metric)."""
    import piq

    yd, yr = to_channels(dist, "y"), to_channels(ref, "y")
    if metric == "ssim":
        return {
            "ours": lambda: ssim(yd, yr, downsample="auto"),
            "piq": lambda: piq.ssim(yd, yr, data_range=1.0, downsample=True, reduction="none"),
        }
    if metric == "ms_ssim":
        return {
            "ours": lambda: ms_ssim(yd, yr),
            "piq": lambda: piq.multi_scale_ssim(yd, yr, data_range=1.0, reduction="none"),
        }
    if metric == "vsi":
        return {
            "ours": lambda: vsi(dist, ref),
            "piq": lambda: piq.vsi(dist, ref, data_range=1.0, reduction="none"),
        }
    if metric == "niqe":
        return {"ours": lambda: niqe(dist)}
    sides: dict[str, Callable[[], Any]] = {"ours": lambda: brisque(dist)}
    if _piq_brisque_cached():
        sides["piq"] = lambda: piq.brisque(dist, data_range=1.0, reduction="none")
    else:
        model = dict(np.load(BRISQUE_PARAMS))
        sides["piq"] = lambda: _piq_brisque_offline(dist, model)
    return sides


def _timed(call: Callable[[], Any], images: int, device: torch.device) -> Callable[[], Measurement]:
    def run() -> Measurement:
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            call()
        sync(device)
        return Measurement(time.perf_counter() - start, images)

    return run


def add_arguments(group: Any) -> None:
    group.add_argument("--batch", type=int, default=8, help="iqa: images per call (default 8)")
    group.add_argument(
        "--metrics", nargs="+", default=list(METRICS), choices=METRICS, help="iqa: metrics to time"
    )


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Per metric: ours vs piq, alternating rounds on the same batch; the paired speed ratio."""
    size = (48, 64) if args.tiny else (384, 512)
    batch = 2 if args.tiny else args.batch
    metrics = [m for m in args.metrics if not args.tiny or m in ("ssim", "vsi")]
    dist, ref, source = _images(batch, size)
    dist, ref = dist.to(device), ref.to(device)
    result: dict[str, Any] = {
        "settings": {"batch": batch, "size": list(size), "images": source, "device": str(device)},
        "metrics": {},
    }
    for metric in metrics:
        print(f"iqa/{metric}", flush=True)
        sides = {k: _timed(v, batch, device) for k, v in _sides(metric, dist, ref).items()}
        raw = alternate(sides, args.repeats, args.warmup)
        entry: dict[str, Any] = {side: summarize(rows) for side, rows in raw.items()}
        entry["ratio"] = paired_ratio(raw["ours"], raw["piq"]) if "piq" in raw else None
        result["metrics"][metric] = entry
    return result


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = md_header("Image quality benchmark: our classical metrics vs piq", result)
    lines += [
        f"Batch of {s['batch']} images of {s['size'][1]}×{s['size'][0]} px ({s['images']}), "
        f"{s['device']}. SSIM / MS-SSIM on luma, VSI on RGB; piq has no NIQE. piq's BRISQUE "
        "runs with the official LIVE SVR (from torch's hub cache, else our converted copy).",
        "",
    ]
    rows = []
    for name, m in result["metrics"].items():
        piq_side = m.get("piq")
        rows.append(
            [
                name,
                m["ours"]["images_per_s"],
                piq_side["images_per_s"] if piq_side else "–",
                m["ratio"] if m["ratio"] is not None else "–",
            ]
        )
    lines += [
        md_table(["metric", "ours img/s", "piq img/s", "ours / piq (paired)"], rows),
        "",
        "## Every run",
        "",
    ]
    for name, m in result["metrics"].items():
        lines += [f"### {name}", "", raw_table({k: v["raw"] for k, v in m.items() if k != "ratio"})]
    return "\n".join(lines) + "\n"


BENCH = FamilyBench(
    overrides=["task=iqa"],
    suite=Suite(
        run=run,
        markdown=markdown,
        help="classical metrics: ours vs piq on 512×384 images (speed)",
        repeats=5,
        warmup=1,
        add_arguments=add_arguments,
    ),
    packages=("piq",),
)
