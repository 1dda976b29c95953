"""visionzoo.bench (run as scripts/benchmark.py): every suite runs in --tiny mode and writes
well-formed results, and the membrane recipe the benchmark trains is the one the acceptance
criterion names."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from visionzoo.bench import harness
from visionzoo.bench.cases import family_benches
from visionzoo.bench.cli import suites
from visionzoo.recognition.bench import seed_means

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.py"
MEMBRANE = REPO / ".." / "shared" / "data" / "membrane"


BCCD = REPO / ".." / "shared" / "data" / "bccd"
ATT = REPO / ".." / "shared" / "data" / "att_faces"
# The suites run together in one process (one interpreter start and import for all of them),
# each with the data it needs (None: built in). `data` runs on its own: its --families option
# would narrow `overhead` too.
TOGETHER = {"overhead": None, "segmentation": MEMBRANE, "detection": BCCD, "recognition": ATT,
            "iqa": None}  # fmt: skip


def _run_tiny(suites: list[str], out: Path, *extra: str) -> None:
    """`python scripts/benchmark.py <suites...> --tiny --out <out> [extra...]`."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *suites, "--tiny", "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _result(suite: str, out: Path) -> dict[str, Any]:
    """One suite's JSON result, after checking what every suite writes."""
    assert (out / f"{suite}.md").read_text().startswith("# ")
    result = json.loads((out / f"{suite}.json").read_text())
    assert result["suite"] == suite and result["tiny"] is True
    assert {"platform", "cpu_count", "torch", "pytorch_lightning", "timm", "gpu"} <= set(
        result["machine"]
    )
    assert result["runtime_s"] > 0
    return result


@pytest.fixture(scope="module")
def together(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one tiny run of every suite in TOGETHER whose data is present."""
    out = tmp_path_factory.mktemp("bench_tiny")
    suites = [s for s, needs in TOGETHER.items() if needs is None or needs.is_dir()]
    _run_tiny(suites, out, "--compare", "ultralytics", "torchvision")
    return out


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_timed(summary: dict[str, Any]) -> None:
    assert _positive(summary["images_per_s"])
    timed = [r for r in summary["raw"] if not r["warmup"]]
    assert timed and all(_positive(r["seconds"]) and r["images"] > 0 for r in timed)


def test_membrane_experiment_is_the_acceptance_recipe() -> None:
    """`experiment=membrane_unet` composes exactly the command line the issue names."""
    from omegaconf import OmegaConf

    from visionzoo.segmentation.bench import MEMBRANE_RECIPE

    run_dir = "paths.run_dir=/tmp/unused"
    recipe = harness.compose([MEMBRANE_RECIPE, run_dir])
    epochs = recipe.trainer.max_epochs
    explicit = harness.compose(
        [
            "task=segmentation",
            "model=unet",
            "data=membrane",
            "model.encoder=resnet18",
            f"trainer.max_epochs={epochs}",
            "seed=0",
            run_dir,
        ]
    )
    assert OmegaConf.to_yaml(recipe) == OmegaConf.to_yaml(explicit)
    assert recipe.data.splits.train == "0:24" and recipe.data.splits.val == "24:30"
    assert recipe.model.pretrained_file is None  # from scratch


def test_alternate_reverses_order_and_summary_skips_warmup() -> None:
    calls: list[str] = []

    def side(name: str, seconds: float) -> Any:
        def run() -> Any:
            calls.append(name)
            return harness.Measurement(seconds, images=10, steps=2)

        return run

    raw = harness.alternate({"a": side("a", 1.0), "b": side("b", 2.0)}, repeats=2, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    summary = harness.summarize(raw["b"])
    assert summary["repeats"] == 2 and summary["images_per_s"] == pytest.approx(5.0)
    assert summary["steps_per_s"] == pytest.approx(1.0)
    assert [r["warmup"] for r in raw["a"]] == [True, False, False]


def test_cpu_ratio_uses_timed_runs_only() -> None:

    def rows(cpu: list[float]) -> list[dict[str, Any]]:
        return [{"warmup": i == 0, "images": 10, "cpu_seconds": c} for i, c in enumerate(cpu)]

    # a: 10 images per 2 CPU-s (the 100-s warm-up run ignored); b: 10 per 4 CPU-s
    assert harness.cpu_ratio(rows([100.0, 2.0, 2.0, 3.0]), rows([1.0, 4.0, 4.0, 5.0])) == 2.0


def test_limit_count_follows_lightning() -> None:
    assert harness.limit_count(None, 6) == 6
    assert harness.limit_count(2, 6) == 2
    assert harness.limit_count(10, 6) == 6
    assert harness.limit_count(0.5, 6) == 3
    assert harness.limit_count(1.0, 6) == 6


def test_suites_are_the_generic_ones_plus_one_per_family_bench() -> None:
    """Each family with a comparison suite in its bench module is a suite named after it."""
    assert set(suites()) == {"overhead", "data", *family_benches()}
    assert {"detection", "iqa", "recognition", "segmentation"} <= set(family_benches())


@pytest.mark.slow
def test_overhead_suite_tiny(together: Path) -> None:
    result = _result("overhead", together)
    # every family whose bench module has a training loop
    assert set(result["families"]) == set(family_benches(training=True))
    for fam in result["families"].values():
        for side in ("lightning", "plain", "eval"):
            _check_timed(fam[side])
        assert _positive(fam["ratio"]) and _positive(fam["peak_rss_mib"])
        assert _positive(fam["lightning"]["steps_per_s"])
        # both sides take one optimizer step per batch, or the ratio compares different work
        steps = {side: [r["steps"] for r in fam[side]["raw"]] for side in ("lightning", "plain")}
        assert steps["lightning"] == steps["plain"] == [2], steps


@pytest.mark.slow
def test_data_suite_tiny(tmp_path: Path) -> None:
    """The suite's code is the same for every case; one family's cases keep the test short
    (the other families' pipelines have their own tests, and full runs time them)."""
    _run_tiny(["data"], tmp_path, "--families", "segmentation")
    result = _result("data", tmp_path)
    assert set(result["cases"]) == {"segmentation/synthetic", "segmentation/membrane"}
    synthetic = result["cases"]["segmentation/synthetic"]
    assert set(synthetic["loader"]) == {"workers=0", "workers=1"}
    for summary in synthetic["loader"].values():
        _check_timed(summary)
    _check_timed(synthetic["model_train"])
    assert set(synthetic["bottleneck"].values()) <= {"loader", "model"}
    assert synthetic["loader_2_workers_ge_model"] is None  # tiny mode times workers 0 and 1
    if MEMBRANE.is_dir():
        _check_timed(result["cases"]["segmentation/membrane"]["loader"]["workers=0"])


@pytest.mark.slow
@pytest.mark.skipif(not MEMBRANE.is_dir(), reason="membrane data (../shared/data) not present")
def test_segmentation_suite_tiny(together: Path) -> None:
    result = _result("segmentation", together)
    for side in ("ours", "smp"):
        q = result["quality"][side]
        assert len(q["history"]) == 1  # one validation after the single tiny epoch
        assert 0.0 <= q["final"]["dice_fg"] <= 1.0 and 0.0 <= q["final"]["miou"] <= 1.0
        _check_timed(result["throughput"][side])
    assert _positive(result["throughput"]["ratio"])
    assert result["settings"]["foreground_class"]["metric"] == "val/dice_cell"
    assert set(result["acceptance"]) == {
        "throughput_ratio_ge_0.95",
        "dice_fg_final_ours_ge_smp",
        "dice_fg_best_ours_ge_smp",
    }


@pytest.mark.slow
@pytest.mark.skipif(not BCCD.is_dir(), reason="no BCCD")
def test_detection_suite_tiny(together: Path) -> None:
    """Our side of the Ultralytics comparison (Ultralytics itself lives in its own venv, which CI
    does not have): a whole train.py run timed, and BCCD exported for Ultralytics."""
    result = _result("detection", together)
    _check_timed(result["throughput"]["ours"])
    assert set(result["throughput"]) == {"ours"} and "throughput_ratio" not in result
    assert (together / "bccd_yolo" / "data.yaml").is_file()
    assert len(list((together / "bccd_yolo" / "labels" / "train").glob("*.txt"))) == 205
    # Faster R-CNN: DetectionModule under trainer.fit and torchvision's plain loop with the
    # recipe written out by hand train the same network on the same batches: the same losses
    # step by step, and pycocotools' mAP of the plain side's EMA equals ours
    rcnn = result["faster_rcnn"]
    for side in ("ours", "torchvision"):
        _check_timed(rcnn["throughput"][side])
        assert rcnn["throughput"][side]["raw"][0]["steps"] == 3
    assert rcnn["max_step_loss_difference"] < 1e-4, rcnn
    assert abs(rcnn["map_difference"]) < 1e-6 and rcnn["map_within_0_01"], rcnn


@pytest.mark.slow
@pytest.mark.skipif(not ATT.is_dir(), reason="no AT&T")
def test_recognition_suite_tiny(together: Path) -> None:
    """Our ArcFace under trainer.fit vs pml's ArcFaceLoss in a plain loop: both start from the
    same backbone weights, and the plain side's scoring gives our network the accuracy our
    module logged (so the two sides are scored alike)."""
    result = _result("recognition", together)
    assert result["quality"]["seeds"] == [result["settings"]["seed"]]  # --tiny: the config's
    q = result["quality"]["per_seed"][str(result["settings"]["seed"])]
    assert q["same_initial_backbone"] is True
    assert q["val_pairs"] == {"att": [450, 450]}  # every same pair of s31–s40, as many different
    for side in ("ours", "pml"):
        assert [r["epoch"] for r in q[side]["history"]] == [0]  # one validation, one tiny epoch
        assert 0.0 <= q[side]["final_acc"] <= 1.0
        _check_timed(result["throughput"][side])
        _check_timed(result["model_only"][side])
    assert q["ours_final_acc_by_plain_scoring"] == pytest.approx(q["ours"]["final_acc"], abs=1e-6)
    assert "margin=28.6479" in result["settings"]["pml_head"]  # pml's margin is in degrees
    assert _positive(result["throughput"]["ratio"])
    assert set(result["acceptance"]) == {
        "throughput_ratio_ge_0.95",
        "accuracy_final_mean_ours_ge_pml",
    }


def test_recognition_quality_is_compared_by_the_seed_means() -> None:
    def side(final: float, best: float) -> dict[str, float]:
        return {"final_acc": final, "best_acc": best}

    per_seed = {
        0: {"ours": side(0.88, 0.90), "pml": side(0.90, 0.91)},
        1: {"ours": side(0.91, 0.92), "pml": side(0.89, 0.90)},
        2: {"ours": side(0.88, 0.89), "pml": side(0.87, 0.88)},
    }
    got = seed_means(per_seed)
    assert got["seeds"] == [0, 1, 2]
    assert got["mean"]["ours_final_acc"] == pytest.approx(2.67 / 3)
    assert got["mean"]["pml_best_acc"] == pytest.approx(2.69 / 3)
    assert got["mean"]["acc_final_ours_minus_pml"] == pytest.approx((2.67 - 2.66) / 3)


@pytest.mark.slow
def test_iqa_suite_tiny(together: Path) -> None:
    """Our SSIM and VSI next to piq's on the same tiny batch, with a paired ratio each."""
    result = _result("iqa", together)
    assert set(result["metrics"]) == {"ssim", "vsi"}
    for entry in result["metrics"].values():
        _check_timed(entry["ours"])
        _check_timed(entry["piq"])
        assert _positive(entry["ratio"])
