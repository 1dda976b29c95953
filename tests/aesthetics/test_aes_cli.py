"""The family path through the CLI, in-process: ``train.py task=aesthetics`` on a tiny synthetic
set, then ``predict.py`` ranking a folder of photos with its checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from conftest import run_entry
from PIL import Image

from visionzoo.cli import predict_entry, train_entry

TINY = [
    "task=aesthetics",
    "data.synthetic.num_train=24",
    "data.synthetic.num_val=8",
    "data.synthetic.size=32",
    "data.image_size=32",
    "data.crop_size=16",
    "data.batch_size=8",
    "trainer.max_epochs=1",
    "logger=none",
    "callbacks.progress=none",
]


def test_train_then_predict_ranks_a_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, err = run_entry(train_entry, *TINY, f"hydra.run.dir={run}")
    assert code == 0, err[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert {"val/acc", "val/srcc", "val/plcc", "val/emd", "val/std_plcc"} <= set(metrics)
    assert list((run / "plots").glob("val_scores_epoch*.png"))  # task.plots histogram

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(40, 60), (32, 32), (50, 30)]):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(
            photos / f"p{i}.png"
        )
    out = tmp_path / "pred"
    ckpt = run / "checkpoints" / "last.ckpt"
    code, err = run_entry(predict_entry, f"ckpt_path={ckpt}", f"input={photos}", f"output={out}")
    assert code == 0, err[-3000:]
    with (out / "ranking.csv").open() as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["score"]) for r in rows]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3] and scores == sorted(scores, reverse=True)
    assert {Path(r["file"]).name for r in rows} == {"p0.png", "p1.png", "p2.png"}
    assert all(1 <= s <= 10 for s in scores) and all(float(r["std"]) > 0 for r in rows)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width >= 3 * 64
