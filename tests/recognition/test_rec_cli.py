"""The recognition family through its command lines: one tiny training run, then evaluation,
embeddings for a folder, comparing two faces and ONNX export of that run's checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CPU_DDP, TINY_REC, run_cli, run_entry
from sklearn.model_selection import KFold

from visionzoo.cli import compare_entry, eval_entry, export_entry, predict_entry, train_entry
from visionzoo.core.synthetic import default_cache_dir
from visionzoo.recognition.pairs import read_pairs_csv


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("rec_cli")
    code, err = run_entry(
        train_entry,
        *TINY_REC,
        "trainer.max_epochs=1",
        f"hydra.run.dir={out / 'train'}",
    )
    assert code == 0, err
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    return {"out": out, "metrics": metrics, "ckpt": metrics["paths"]["last checkpoint"]}


def test_training_logs_verification_of_each_set(run: dict) -> None:
    metrics = run["metrics"]["metrics"]
    assert metrics["val/acc"] == metrics["val/synthetic/acc"]  # one set: the mean is that set
    for key in ("acc_std", "auc", "eer", "tar@far=0.1"):
        assert f"val/synthetic/{key}" in metrics, sorted(metrics)
    assert (run["out"] / "train" / "logs").is_dir()


def test_eval_reproduces_the_last_validation(run: dict, tmp_path: Path) -> None:
    """``last.ckpt`` is the end of the last epoch, so evaluating it on the same pairs gives the
    accuracy logged by that epoch's validation."""
    code, err = run_entry(eval_entry, f"ckpt_path={run['ckpt']}", f"hydra.run.dir={tmp_path}")
    assert code == 0, err
    got = json.loads((tmp_path / "eval_metrics.json").read_text())["metrics"]
    assert got["val/synthetic/acc"] == pytest.approx(run["metrics"]["metrics"]["val/acc"])


def _val_faces() -> tuple[list[Path], list]:
    root = default_cache_dir() / "synthetic" / "face_identities"
    pairs = read_pairs_csv(root / "val_pairs.csv")
    files = sorted({Path(f) for p in pairs for f in (p.path1, p.path2)})
    return files, pairs


def test_predict_compare_and_export_agree(
    run: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files, pairs = _val_faces()
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, f in enumerate(files[:6]):
        os.symlink(f, folder / f"{i:02d}.png")
    out = tmp_path / "pred"
    code, err = run_entry(
        predict_entry, f"ckpt_path={run['ckpt']}", f"input={folder}", f"output={out}"
    )
    assert code == 0, err
    emb = np.load(out / "embeddings.npy")
    index = (out / "embeddings.csv").read_text().splitlines()
    assert emb.shape == (6, 64) and len(index) == 7 and index[0] == "row,file"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # compare.py: the similarity is the dot product of the two predicted embeddings, and the
    # decision uses the checkpoint's threshold at that FAR
    first, second = sorted(folder.iterdir())[:2]
    capsys.readouterr()
    pair = [f"ckpt_path={run['ckpt']}", f"image1={first}", f"image2={second}"]
    code, err = run_entry(compare_entry, *pair, "far=0.1")
    assert code == 0, err
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    threshold = torch.load(run["ckpt"], weights_only=True)["visionzoo"]["far_thresholds"]["0.1"]
    assert result["similarity"] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-5)
    assert result["threshold"] == threshold
    assert result["same"] == (result["similarity"] >= threshold)
    # 24 impostor pairs cannot resolve a FAR of 1e-6: one line says which FARs they can
    code, err = run_entry(compare_entry, *pair, "far=1e-6")
    assert code == 2 and "far=1e-06 has no threshold" in err and "\n" not in err.strip()

    onnx = tmp_path / "rec.onnx"
    code, err = run_entry(export_entry, f"ckpt_path={run['ckpt']}", f"output={onnx}")
    assert code == 0, err
    import onnxruntime as ort

    from visionzoo.cli import load_checkpoint_module

    module = load_checkpoint_module(run["ckpt"]).eval()
    faces = torch.rand(3, 3, 32, 32) * 2 - 1
    (got,) = ort.InferenceSession(str(onnx)).run(None, {"images": faces.numpy()})
    with torch.no_grad():
        want = module.embedder(faces).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_verification_accuracy_matches_sklearn_folds(run: dict) -> None:
    """The logged 10-fold accuracy, recomputed from the checkpoint's embeddings of the held-out
    pairs with scikit-learn's KFold and a threshold sweep on each training split."""
    from visionzoo.cli import load_checkpoint_module

    module = load_checkpoint_module(run["ckpt"]).eval()
    files, pairs = _val_faces()
    from visionzoo.recognition.data import face_transform

    emb = module.embed_files(files, face_transform(train=False, image_size=(32, 32)))
    row = {f: i for i, f in enumerate(files)}
    a = emb[[row[Path(p.path1)] for p in pairs]]
    b = emb[[row[Path(p.path2)] for p in pairs]]
    same = np.array([p.same for p in pairs])
    dist = ((a - b) ** 2).sum(1)
    thresholds = np.arange(0, 4, 0.01)
    accs = []
    for train, test in KFold(n_splits=10, shuffle=False).split(dist):
        train_acc = [((dist[train] < t) == same[train]).mean() for t in thresholds]
        t = thresholds[int(np.argmax(train_acc))]
        accs.append(((dist[test] < t) == same[test]).mean())
    assert run["metrics"]["metrics"]["val/acc"] == pytest.approx(np.mean(accs), abs=1e-6)


@pytest.mark.slow
def test_partial_fc_checkpoint_under_ddp_holds_every_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two CPU processes train with Partial FC, each holding half of the class centres. The
    checkpoint gathers both halves (all rows, not one rank's twice), and one process evaluates
    it to the accuracy the two-process validation logged (embeddings gathered over ranks)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Lightning gives each DDP process
    run_dir = tmp_path / "ddp"
    proc = run_cli(
        "train.py",
        *TINY_REC,
        *CPU_DDP,
        "model.partial_fc=1.0",
        "trainer.max_epochs=1",
        "logger=none",
        "task.plots=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "metrics.json").read_text())
    last = result["paths"]["last checkpoint"]
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    (shard_id,) = ckpt["visionzoo"]["shard_optimizer_ids"][0]
    moments = ckpt["optimizer_states"][0]["state"][shard_id]["exp_avg"]
    assert moments.shape == (4, 64)  # trained sharded: rank 0's Adam state is for its 4 classes
    state = ckpt["state_dict"]
    (key,) = [k for k in state if k.startswith("model.head.")]
    weight = state[key]
    assert weight.shape == (8, 64)  # ... and the checkpoint holds all 8 identities' centres
    assert not torch.equal(weight[:4], weight[4:])  # rank 1's shard, not rank 0's again
    code, err = run_entry(eval_entry, f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert code == 0, err
    single = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["metrics"]
    assert single["val/acc"] == pytest.approx(result["metrics"]["val/acc"], abs=1e-6)
