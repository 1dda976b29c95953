"""``RecognitionDataModule`` over every training and verification format: the datasets it
builds hold the images and labels the files say (checked against the source folders)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.recognition.data import FaceImages, RecognitionDataModule, decode
from visionzoo.recognition.pairs import read_pairs_csv
from visionzoo.recognition.pk_sampler import PKBatchSampler
from visionzoo.recognition.recordio import pack_identity_folders
from visionzoo.recognition.synthetic import write_identities
from visionzoo.recognition.verification_bin import write_bin


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_identities(root, num_train_ids=5, num_val_ids=3, images_per_id=3, size=32, seed=1)
    return root


def _dm(root: Path, **kw) -> RecognitionDataModule:
    return RecognitionDataModule(root=str(root), image_size=(32, 32), batch_size=6, **kw)


def _raw(dataset, i: int) -> np.ndarray:
    """The decoded image of sample ``i`` before its transform."""
    return decode(dataset.sources[i])


def test_identity_folders_and_recordio_give_the_same_training_set(faces: Path) -> None:
    folders = _dm(faces, train={"format": "folders", "path": "train"}, val_sets=[])
    sources, labels, names = folders._train_items()
    assert names == [f"id{i:04d}" for i in range(5)] and labels == [i // 3 for i in range(15)]

    pack_identity_folders(faces / "train", faces / "packed" / "train")
    rec = _dm(faces, train={"format": "recordio", "path": "packed/train.rec"}, val_sets=[])
    rec_sources, rec_labels, _ = rec._train_items()
    assert rec_labels == labels and rec.num_classes == 5
    for i in (0, 7, 14):  # the packed record is the PNG re-encoded as JPEG at quality 95
        buf = io.BytesIO()
        Image.open(sources[i]).convert("RGB").save(buf, format="JPEG", quality=95)
        np.testing.assert_array_equal(decode(rec_sources[i]), np.asarray(Image.open(buf)))


def test_verification_sets_in_every_format(faces: Path) -> None:
    pairs = read_pairs_csv(faces / "val_pairs.csv")
    # an insightface .bin of the same pairs (lossless PNG bytes, so images compare exactly)
    blobs = []
    for p in pairs:
        for f in (p.path1, p.path2):
            buf = io.BytesIO()
            Image.open(f).save(buf, format="PNG")
            blobs.append(buf.getvalue())
    write_bin(faces / "val.bin", blobs, [p.same for p in pairs])
    # LFW layout: <root>/<name>/<name>_<nnnn>.jpg, 1 fold of `same`/`different` lines
    lfw = faces / "lfw"
    for person in (faces / "val").iterdir():
        (lfw / person.name).mkdir(parents=True)
        for k, f in enumerate(sorted(person.iterdir())):
            Image.open(f).save(lfw / person.name / f"{person.name}_{k + 1:04d}.jpg", quality=98)
    same = [p for p in pairs if p.same][:3]
    diff = [p for p in pairs if not p.same][:3]

    def name_num(path: str) -> tuple[str, int]:
        return Path(path).parent.name, int(Path(path).stem) + 1

    lines = ["1\t3"]
    lines += [
        f"{name_num(p.path1)[0]}\t{name_num(p.path1)[1]}\t{name_num(p.path2)[1]}" for p in same
    ]
    lines += ["\t".join(f"{n}\t{k}" for n, k in map(name_num, (p.path1, p.path2))) for p in diff]
    (faces / "pairs.txt").write_text("\n".join(lines) + "\n")

    dm = _dm(
        faces,
        train={"format": "folders", "path": "train"},
        val_sets=[
            {"name": "csv", "format": "pairs_csv", "path": "val_pairs.csv"},
            {"name": "bin", "format": "bin", "path": "val.bin"},
            {"name": "lfw", "format": "lfw", "path": "pairs.txt", "images": "lfw"},
            {"name": "held_out", "format": "folders", "path": "val", "num_same": None},
        ],
    )
    dm.setup("validate")
    data = dm.datasets["val"]
    sets = {s.name: s for s in dm.sets}
    want_same = np.array([p.same for p in pairs])
    for name in ("csv", "bin"):
        np.testing.assert_array_equal(sets[name].same, want_same)
    csv, binary = sets["csv"], sets["bin"]
    for k, p in enumerate(pairs):  # both sets point at the pictures of the pairs file
        want = [np.asarray(Image.open(f).convert("RGB")) for f in (p.path1, p.path2)]
        for vset in (csv, binary):
            np.testing.assert_array_equal(_raw(data, vset.first[k]), want[0])
            np.testing.assert_array_equal(_raw(data, vset.second[k]), want[1])
    np.testing.assert_array_equal(sets["lfw"].same, [True] * 3 + [False] * 3)
    # held-out folders: every same-identity pair (3 people × 3 pairs) and as many different ones
    held = sets["held_out"]
    assert held.same.sum() == 9 and (~held.same).sum() == 9
    assert len(held.images) == 9 and list(held.labels) == [i // 3 for i in range(9)]
    labels_of = dict(zip(held.images.tolist(), held.labels.tolist(), strict=True))
    for a, b, s in zip(held.first, held.second, held.same, strict=True):
        assert (labels_of[int(a)] == labels_of[int(b)]) == s
    assert dm.meta["val_sets"] == ["csv", "bin", "lfw", "held_out"]


def test_pair_based_losses_get_identity_batches(faces: Path) -> None:
    dm = _dm(faces, train={"format": "folders", "path": "train"}, val_sets=[], k=3, sampler="pk")
    sources, labels, _ = dm._train_items()
    dataset = FaceImages(sources, labels, dm.train_tf)
    sampler = dm.batch_sampler("train", dataset)
    assert isinstance(sampler, PKBatchSampler)
    batch = next(iter(sampler))
    people = [labels[i] for i, _ in batch]
    assert len(batch) == 6 and sorted(np.bincount(people)[np.bincount(people) > 0]) == [3, 3]
    random = _dm(faces, train={"format": "folders", "path": "train"}, val_sets=[], sampler="random")
    assert random.batch_sampler("train", dataset) is None
    item = dataset[(0, 5)]
    assert item["image"].shape == (3, 32, 32) and item["label"] == 0
    assert torch.equal(dataset[(0, 5)]["image"], item["image"])  # seeded augmentation


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"train": {"format": "lmdb"}},
            "data.train.format='lmdb'; choose one of folders, recordio",
        ),
        ({"val_sets": [{"format": "txt", "path": "x"}]}, "data.val_sets[0].format='txt'"),
        ({"sampler": "balanced"}, "data.sampler='balanced'; choose auto, pk or random"),
        ({"train": {"format": "folders", "path": "nowhere"}}, "identity folder root"),
    ],
)
def test_bad_options_name_the_key(faces: Path, kw: dict, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        dm = _dm(faces, **{"val_sets": [], **kw})
        dm._train_items()
