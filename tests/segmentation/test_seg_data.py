"""Segmentation data: on-disk formats, mask decoding, errors, synthetic data, seeded sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.core.sampler import SeededSampler
from visionzoo.core.synthetic import ensure_synthetic
from visionzoo.registry import RegistryError
from visionzoo.segmentation.data import SegmentationDataModule

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
COLOUR = (200, 100, 50)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode).save(path)


def _solid(h: int, w: int, colour=COLOUR) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, 3)).copy()


def _binary_mask(h: int, w: int) -> np.ndarray:
    """Left half 0, right half 255."""
    m = np.zeros((h, w), dtype=np.uint8)
    m[:, w // 2 :] = 255
    return m


def _mask_folder(root: Path, n: int = 4, h: int = 40, w: int = 48) -> Path:
    for i in range(n):
        _save(root / "images" / f"img{i}.png", _solid(h, w))
        _save(root / "masks" / f"img{i}.png", _binary_mask(h, w))
    return root


def _dm(root: Path, **kw) -> SegmentationDataModule:
    args = {
        "format": "mask_folder",
        "root": str(root),
        "num_classes": 2,
        "splits": {"train": "0:3", "val": "3:4", "test": "3:4"},
        "image_size": [32, 32],
        "batch_size": 2,
        "num_workers": 0,
    }
    return SegmentationDataModule(**{**args, **kw})


# (a) mask_folder ---------------------------------------------------------------------------


def test_mask_folder_batches(tmp_path: Path) -> None:
    dm = _dm(_mask_folder(tmp_path), value_map={0: 0, 255: 1})
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["val"]) == 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 32, 32) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= {0, 1}
    assert len(batch["path"]) == 2

    val = next(iter(dm.val_dataloader()))
    assert val["path"] == [str(tmp_path / "images" / "img3.png")]
    # eval: the image is resized to 32×32, the mask stays at the label file's 40×48
    expected = torch.zeros(1, 40, 48, dtype=torch.long)
    expected[..., 24:] = 1
    assert torch.equal(val["mask"], expected)
    # eval_native_labels=false: 40×48 → 32×32 nearest keeps the half/half split (column 16 ← 24)
    shrunk = _dm(tmp_path, value_map={0: 0, 255: 1}, eval_native_labels=False)
    shrunk.setup("validate")
    expected = torch.zeros(1, 32, 32, dtype=torch.long)
    expected[..., 16:] = 1
    assert torch.equal(next(iter(shrunk.val_dataloader()))["mask"], expected)
    norm = (np.array(COLOUR) / 255 - MEAN) / STD
    ref = torch.tensor(norm, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    torch.testing.assert_close(val["image"], ref, atol=1e-5, rtol=0)


def test_mask_folder_named_split_files(tmp_path: Path) -> None:
    root = _mask_folder(tmp_path)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img2\nimg0\n")
    (root / "splits" / "val.txt").write_text("img1\n")
    dm = _dm(root, value_map={0: 0, 255: 1}, splits=None)
    assert [p.stem for p, _ in dm.pairs("train")] == ["img2", "img0"]
    assert [m.name for m in dm.mask_paths("val")] == ["img1.png"]
    with pytest.raises(DataError, match="nosuch.txt"):
        _dm(root, splits={"train": "nosuch"}).pairs("train")


# (b) out-of-range mask values --------------------------------------------------------------


@pytest.mark.parametrize("value_map", [None, {0: 0, 255: 1}])
def test_mask_value_outside_classes_raises(tmp_path: Path, value_map) -> None:
    root = _mask_folder(tmp_path, n=1, h=8, w=8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2, 3] = 7
    _save(root / "masks" / "img0.png", mask)
    dm = _dm(root, value_map=value_map, splits={"train": None, "val": None})
    dm.setup("fit")
    with pytest.raises(DataError, match=r"img0\.png") as info:
        dm.datasets["val"][0]
    assert "[7]" in str(info.value)


# (c) Pascal VOC ----------------------------------------------------------------------------


def _voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved), 256 entries, flattened."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def test_voc_layout_reads_palette_indices(tmp_path: Path) -> None:
    h, w = 12, 16
    ids = np.zeros((h, w), dtype=np.uint8)
    ids[2:8, 3:9] = 15  # person
    ids[2:8, 9] = 255  # boundary
    ids[9:, :] = 1
    for stem in ("2007_000001", "2007_000002"):
        Image.fromarray(_solid(h, w)).save(_mkdir(tmp_path / "JPEGImages") / f"{stem}.jpg")
        mask = Image.fromarray(ids, "P")
        mask.putpalette(_voc_palette())
        mask.save(_mkdir(tmp_path / "SegmentationClass") / f"{stem}.png")
    sets = _mkdir(tmp_path / "ImageSets" / "Segmentation")
    (sets / "train.txt").write_text("2007_000001\n")
    (sets / "val.txt").write_text("2007_000002\n")
    dm = SegmentationDataModule(
        format="voc", root=str(tmp_path), image_size=[h, w], batch_size=1, num_workers=0
    )
    assert dm.num_classes == 21 and dm.class_names[15] == "person"
    assert Image.open(tmp_path / "SegmentationClass" / "2007_000001.png").mode == "P"
    _, mask_path = dm.pairs("train")[0]
    np.testing.assert_array_equal(dm.decoder(mask_path), ids.astype(np.int64))
    dm.setup("fit")
    sample = dm.datasets["val"][0]
    assert sample["image"].shape == (3, h, w)
    assert torch.equal(sample["mask"], torch.from_numpy(ids).long())
    assert dm.meta["ignore_index"] == 255


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# (d) CamVid --------------------------------------------------------------------------------


def test_camvid_void_becomes_ignore(tmp_path: Path) -> None:
    ids = np.arange(12, dtype=np.uint8).repeat(2).reshape(4, 6)  # every id 0..11
    for split in ("train", "val"):
        _save(tmp_path / split / "0001TP_006690.png", _solid(4, 6))
        _save(tmp_path / f"{split}annot" / "0001TP_006690.png", ids)
    dm = SegmentationDataModule(
        format="camvid", root=str(tmp_path), image_size=[4, 6], batch_size=1, num_workers=0
    )
    assert dm.num_classes == 11
    expected = ids.astype(np.int64)
    expected[ids == 11] = 255
    np.testing.assert_array_equal(dm.decoder(dm.pairs("train")[0][1]), expected)
    dm.setup("fit")
    assert torch.equal(dm.datasets["val"][0]["mask"], torch.from_numpy(expected))


def test_camvid_value_above_void_raises(tmp_path: Path) -> None:
    _save(tmp_path / "train" / "a.png", _solid(2, 2))
    _save(tmp_path / "trainannot" / "a.png", np.full((2, 2), 12))
    dm = SegmentationDataModule(format="camvid", root=str(tmp_path), image_size=[2, 2])
    with pytest.raises(DataError, match=r"a\.png.*\[12\]"):
        dm.decoder(dm.pairs("train")[0][1])


# (e) colour-coded masks --------------------------------------------------------------------

PALETTE = [[0, 0, 0], [255, 0, 0], [0, 128, 255]]


def test_palette_masks_decode_to_class_ids(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 2, 1], [2, 2, 0, 1]])
    rgb = np.array(PALETTE, dtype=np.uint8)[ids]
    _save(tmp_path / "images" / "a.png", _solid(2, 4))
    _save(tmp_path / "masks" / "a.png", rgb)
    dm = _dm(tmp_path, num_classes=3, palette=PALETTE, splits={"train": None, "val": None})
    np.testing.assert_array_equal(dm.decoder(tmp_path / "masks" / "a.png"), ids)


def test_palette_unknown_colour_raises(tmp_path: Path) -> None:
    rgb = np.array(PALETTE, dtype=np.uint8)[np.array([[0, 1], [2, 0]])]
    rgb[1, 1] = (0, 0, 255)
    _save(tmp_path / "masks" / "b.png", rgb)
    dm = _dm(tmp_path, num_classes=3, palette=PALETTE)
    with pytest.raises(DataError, match=r"b\.png") as info:
        dm.decoder(tmp_path / "masks" / "b.png")
    assert "[[0, 0, 255]]" in str(info.value)


# (f) broken datasets -----------------------------------------------------------------------


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = _mask_folder(tmp_path, n=2, h=8, w=8)
    (root / "images" / "x.png").write_bytes(b"not a png at all \x00\x01\x02" * 10)
    _save(root / "masks" / "x.png", np.zeros((8, 8)))
    dm = _dm(root, value_map={0: 0, 255: 1}, splits={"train": None, "val": None})
    dm.setup("fit")
    ds = dm.datasets["val"]
    index = [Path(p).name for p, _ in ds.pairs].index("x.png")
    for i in set(range(len(ds))) - {index}:  # the intact images still load
        ds[i]
    with pytest.raises(DataError, match=r"x\.png"):
        ds[index]


def test_missing_mask_raises(tmp_path: Path) -> None:
    root = _mask_folder(tmp_path, n=2, h=8, w=8)
    (root / "masks" / "img1.png").unlink()
    dm = _dm(root, value_map={0: 0, 255: 1}, splits={"train": None, "val": None})
    with pytest.raises(DataError, match=r"img1\.png"):
        dm.setup("fit")


def test_image_mask_size_mismatch_raises(tmp_path: Path) -> None:
    root = _mask_folder(tmp_path, n=1, h=8, w=8)
    _save(root / "masks" / "img0.png", np.zeros((8, 9)))
    dm = _dm(root, value_map={0: 0, 255: 1}, splits={"train": None, "val": None})
    dm.setup("fit")
    with pytest.raises(DataError, match="must match"):
        dm.datasets["val"][0]


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        _dm(tmp_path / "nowhere").prepare_data()


# (g) synthetic shapes ----------------------------------------------------------------------

SYN = {"num_train": 4, "num_val": 2, "size": 32, "max_shapes": 2, "seed": 0}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_synthetic_layout_and_determinism(tmp_path: Path) -> None:
    a = ensure_synthetic("segmentation_shapes", tmp_path / "syn", **SYN)
    b = ensure_synthetic("segmentation_shapes", tmp_path / "other" / "syn2", **SYN)
    assert a == tmp_path / "syn"
    stems = [f"{i:05d}" for i in range(6)]
    assert sorted(p.name for p in (a / "images").iterdir()) == [f"{s}.png" for s in stems]
    assert sorted(p.name for p in (a / "masks").iterdir()) == [f"{s}.png" for s in stems]
    assert (a / "splits" / "train.txt").read_text().split() == stems[:4]
    assert (a / "splits" / "val.txt").read_text().split() == stems[4:]
    assert json.loads((a / "synthetic.json").read_text()) == {"name": "segmentation_shapes", **SYN}
    assert _tree(a) == _tree(b)
    c = ensure_synthetic("segmentation_shapes", tmp_path / "seed1", **{**SYN, "seed": 1})
    assert _tree(c)["images/00000.png"] != _tree(a)["images/00000.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_synthetic_cache_reused_and_rebuilt(tmp_path: Path) -> None:
    root = ensure_synthetic("segmentation_shapes", tmp_path / "syn", **SYN)
    files = [root / "synthetic.json", root / "images" / "00000.png"]
    mtimes = [p.stat().st_mtime_ns for p in files]
    ensure_synthetic("segmentation_shapes", root, **SYN)
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    ensure_synthetic("segmentation_shapes", root, **{**SYN, "num_val": 1})
    assert len(list((root / "images").iterdir())) == 5
    with pytest.raises(RegistryError, match="nope.*available: .*segmentation_shapes"):
        ensure_synthetic("nope", tmp_path / "x")


def test_synthetic_masks_match_drawn_shapes(tmp_path: Path) -> None:
    """Masks hold ids 0..3; mask>0 pixels are exactly the flat-coloured shape pixels: at most
    ``max_shapes`` colours there, each colour a single class, and a noisy background elsewhere."""
    root = ensure_synthetic("segmentation_shapes", tmp_path / "syn", **SYN)
    for mask_path in sorted((root / "masks").iterdir()):
        mask = np.asarray(Image.open(mask_path))
        image = np.asarray(Image.open(root / "images" / mask_path.name).convert("RGB"))
        assert mask.shape == image.shape[:2] == (32, 32)
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
        fg = mask > 0
        assert 0 < fg.sum() < fg.size
        colours, inverse = np.unique(image[fg], axis=0, return_inverse=True)
        assert len(colours) <= SYN["max_shapes"]
        for k in range(len(colours)):
            assert len(np.unique(mask[fg][inverse.ravel() == k])) == 1
        assert len(np.unique(image[~fg], axis=0)) > 10 * SYN["max_shapes"]


def test_synthetic_datamodule_reads_generated_data(tmp_path: Path) -> None:
    dm = SegmentationDataModule(
        root=str(tmp_path / "syn"),
        num_classes=4,
        synthetic={"name": "segmentation_shapes", **SYN},
        image_size=[16, 16],
        batch_size=2,
    )
    dm.prepare_data()
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16)
    assert batch["mask"].max() <= 3


# (h) seeded sampling and exact resume ------------------------------------------------------


def test_seeded_sampler_is_a_function_of_seed_and_epoch() -> None:
    def run(seed: int, epoch: int) -> list[tuple[int, int]]:
        s = SeededSampler(20, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    first = run(3, 1)
    assert first == run(3, 1)
    assert sorted(i for i, _ in first) == list(range(20))
    assert len({s for _, s in first}) == 20
    other_epoch = run(3, 2)
    assert [i for i, _ in other_epoch] != [i for i, _ in first]
    assert {s for _, s in other_epoch}.isdisjoint({s for _, s in first})
    assert [i for i, _ in run(4, 1)] != [i for i, _ in first]
    fixed = SeededSampler(5, shuffle=False, seed=3)
    assert [i for i, _ in fixed] == [0, 1, 2, 3, 4]
    assert len(fixed) == 5


def test_dataset_augmentation_is_fixed_by_the_sample_seed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(2):  # textured images so that crops and flips change the pixels
        _save(root / "images" / f"{i}.png", rng.integers(0, 256, (40, 48, 3)))
        _save(root / "masks" / f"{i}.png", rng.integers(0, 2, (40, 48)))
    dm = _dm(root, splits={"train": None, "val": None})
    dm.setup("fit")
    ds = dm.datasets["train"]
    a, b = ds[(1, 1234)], ds[(1, 1234)]
    ds[(0, 99)]  # drawing other samples in between must not matter
    c = ds[(1, 1234)]
    for x in (b, c):
        assert torch.equal(a["image"], x["image"]) and torch.equal(a["mask"], x["mask"])
    others = [ds[(1, s)]["image"] for s in (1, 2, 3, 4)]
    assert any(not torch.equal(a["image"], o) for o in others)


def test_equal_probability_flips_fire_independently(tmp_path: Path) -> None:
    """hflip and vflip at p=0.5 must each fire on about half the seeds, *independently*: with
    albumentations' ``Compose.set_random_seed`` alone both flips share one seed and always agree.
    Quadrant labels 0..3 show which flips a sample got (the crop keeps the whole image)."""
    root = tmp_path / "data"
    quad = np.zeros((32, 32), dtype=np.uint8)
    quad[:16, 16:], quad[16:, :16], quad[16:, 16:] = 1, 2, 3
    _save(root / "images" / "0.png", np.dstack([quad * 60] * 3))
    _save(root / "masks" / "0.png", quad)
    augment = {"scale": [1.0, 1.0], "hflip": 0.5, "vflip": 0.5, "rotate90": 0.0, "color": 0.0}
    dm = _dm(root, num_classes=4, splits={"train": None, "val": None}, augment=augment)
    dm.setup("fit")
    ds = dm.datasets["train"]
    # top-left label after the flips: none 0, h 1, v 2, both 3
    outcomes = [int(ds[(0, seed)]["mask"][0, 0]) for seed in range(400)]
    counts = np.bincount(outcomes, minlength=4)
    assert counts.sum() == 400 and (counts >= 70).all(), counts  # ~100 each; 70 is > 3 sd off


def test_train_loader_repeats_exactly(tmp_path: Path) -> None:
    """Two loaders for the same (seed, epoch) give identical batches: resuming is exact."""
    dm = _dm(_mask_folder(tmp_path), value_map={0: 0, 255: 1}, splits={"train": None, "val": None})

    def batches() -> list[dict]:
        return list(dm.train_dataloader())

    first, second = batches(), batches()
    assert len(first) == 2  # 4 samples, batch 2
    for x, y in zip(first, second, strict=True):
        assert x["path"] == y["path"]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
