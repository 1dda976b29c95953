"""The fiqa CLI end to end, in-process: a tiny recogniser (with dropout, for SER-FIQ), a
hand-crafted regressor trained on its FaceQnet pseudo-labels, then one ``eval.py task=fiqa``
comparing the hand-crafted measure, SER-FIQ, that checkpoint and precomputed scores by EDC."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import TINY_REC, run_entry

from visionzoo.cli import eval_entry, train_entry
from visionzoo.core.synthetic import default_cache_dir, ensure_synthetic
from visionzoo.fiqa.edc import theoretical_best_area

DATA = {  # the synthetic degraded faces, tiny: 3 evaluation identities × 6 images
    "num_train_ids": 4,
    "num_val_ids": 3,
    "images_per_id": 6,
    "levels": [0.5, 1.0],
    "clean_per_id": 2,
    "nuisance": 0.2,
    "size": 32,
    "seed": 0,
}
TINY_DATA = [f"data.synthetic.{k}={v}".replace(" ", "") for k, v in DATA.items()]
TINY_DATA += ["data.image_size=[32,32]"]
TINY_DATA += ["task.edc.fmr=0.05"]  # 108 non-mated comparisons: FMR 1e-3 is not measurable


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("fiqa_cli")
    rec = tmp / "rec"
    code, err = run_entry(
        train_entry, *TINY_REC, "model.backbone=test_resnet", "model.dropout=0.2",
        "trainer.max_epochs=1", "logger=none",
        "task.plots=false", f"hydra.run.dir={rec}",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    recognizer = rec / "checkpoints" / "last.ckpt"
    mlp = tmp / "mlp"
    code, err = run_entry(
        train_entry, "task=fiqa", "model=handcrafted_mlp", *TINY_DATA, "task.labels=faceqnet",
        "callbacks.progress=none", "logger=none",
        f"task.recognizer={recognizer}", "trainer.max_epochs=1", "task.plots=false",
        f"hydra.run.dir={mlp}",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    # An "oracle" scores file from the known degradation levels, in another tool's format.
    root = ensure_synthetic("degraded_faces", default_cache_dir() / "synthetic" / "degraded_faces",
                            **DATA)  # fmt: skip
    oracle = tmp / "oracle.csv"
    with open(root / "degradations.csv", newline="") as f, open(oracle, "w") as out:
        out.write("file,score\n")
        for row in csv.DictReader(f):
            out.write(f"{root / row['path']},{1 - float(row['level'])}\n")
    ev = tmp / "eval"
    code, err = run_entry(
        eval_entry, "task=fiqa", "model=handcrafted", "data=synthetic_degraded_faces", *TINY_DATA,
        f"task.recognizer={recognizer}",
        f"task.methods=[serfiq,{mlp / 'checkpoints' / 'last.ckpt'},{oracle}]",
        "model.combine=arithmetic", "task.edc.limit=0.3", f"hydra.run.dir={ev}",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    return {"eval": ev, "mlp": mlp}


def test_training_on_pseudo_labels_writes_a_checkpoint(runs: dict) -> None:
    metrics = json.loads((runs["mlp"] / "metrics.json").read_text())["metrics"]
    assert "val/srcc" in metrics and Path(runs["mlp"] / "checkpoints" / "last.ckpt").is_file()


def test_one_eval_compares_every_method(runs: dict) -> None:
    out = json.loads((runs["eval"] / "eval_metrics.json").read_text())
    m = out["metrics"]
    methods = ["handcrafted", "serfiq", "last", "oracle", "random"]
    for name in methods:
        for key in ("pauc", "pauc_rel", "fnmr@0.3"):
            assert f"val/{key}/{name}" in m, sorted(m)
        # pAUC_rel = pAUC − ∫₀^0.3 max(0, e0 − x) dx with e0 the FNMR before discarding
        best = theoretical_best_area(m["val/fnmr"], 0.3)
        # (logged metrics are float32: compare to 1e-6)
        assert m[f"val/pauc_rel/{name}"] == pytest.approx(m[f"val/pauc/{name}"] - best, abs=1e-6)
        assert 0 <= m[f"val/pauc/{name}"] <= 0.3 + 1e-6  # FNMR ≤ 1 over a 0.3 range
    # the oracle's scores are 1 − level: a perfect (negative) rank correlation with the level
    assert m["val/srcc_level/oracle"] == pytest.approx(-1.0)
    assert m["val/srcc_degraded/oracle"] == pytest.approx(-1.0)  # and among the degraded alone
    table = list(csv.DictReader(open(runs["eval"] / "pauc_val.csv")))
    assert [r["method"] for r in table] == methods
    assert (runs["eval"] / "edc_val.png").stat().st_size > 0
