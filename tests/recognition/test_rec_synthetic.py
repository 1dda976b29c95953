"""Synthetic identities: layout, determinism, and difficulty — a raw-pixel cosine verifier on
the val pairs (accuracy at its best threshold, from scikit-learn's ROC curve) must beat chance
without being near perfect, and the mean colour alone must stay near chance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_curve

from visionzoo.recognition.pairs import read_pairs_csv
from visionzoo.recognition.synthetic import write_identities
from visionzoo.registry import get_generator


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faces") / "set"
    write_identities(out)  # the defaults: 40 + 20 identities x 10 images, 112 px
    return out


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_layout(default_set: Path) -> None:
    assert get_generator("face_identities") is write_identities
    train = sorted(p.name for p in (default_set / "train").iterdir())
    val = sorted(p.name for p in (default_set / "val").iterdir())
    assert len(train) == 40 and len(val) == 20 and not set(train) & set(val)
    files = sorted((default_set / "val" / val[0]).iterdir())
    assert [f.name for f in files] == sorted(f"{k}.png" for k in range(10))
    image = np.asarray(Image.open(files[0]))
    assert image.shape == (112, 112, 3) and image.dtype == np.uint8
    lines = (default_set / "val_pairs.csv").read_text().splitlines()
    assert lines[0] == "path1,path2,same" and lines[1].startswith("val/")
    pairs = read_pairs_csv(default_set / "val_pairs.csv")  # checks every image exists
    assert sum(p.same for p in pairs) == 20 * 45 and len(pairs) == 2 * 20 * 45
    assert all(Path(p.path1).parts[-3] == "val" for p in pairs)


def test_deterministic_per_seed(tmp_path: Path) -> None:
    small = {"num_train_ids": 2, "num_val_ids": 2, "images_per_id": 2, "size": 64}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_identities(tmp_path / name, seed=seed, **small)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def _best_accuracy(scores: np.ndarray, same: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(same, scores)
    positives, negatives = same.sum(), (~same).sum()
    return float(((tpr * positives + (1 - fpr) * negatives) / len(same)).max())


def test_neither_trivial_nor_impossible(default_set: Path) -> None:
    pairs = read_pairs_csv(default_set / "val_pairs.csv")
    paths = sorted({p for pair in pairs for p in (pair.path1, pair.path2)})
    row = {p: i for i, p in enumerate(paths)}
    images = np.stack([np.asarray(Image.open(p), np.float32) for p in paths])
    first = np.array([row[p.path1] for p in pairs])
    second = np.array([row[p.path2] for p in pairs])
    same = np.array([p.same for p in pairs])
    flat = images.reshape(len(paths), -1)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    raw = (unit @ unit.T)[first, second]  # cosine of the raw pixels
    mean = images.mean((1, 2))
    colour = -np.linalg.norm(mean[first] - mean[second], axis=1)  # closer mean colour = same
    raw_acc, colour_acc = _best_accuracy(raw, same), _best_accuracy(colour, same)
    print(f"raw-pixel cosine accuracy {raw_acc:.3f}, mean-colour accuracy {colour_acc:.3f}")
    assert 0.55 < raw_acc < 0.95
    assert colour_acc < 0.62 and colour_acc < raw_acc
