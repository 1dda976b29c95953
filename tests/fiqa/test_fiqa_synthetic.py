"""The synthetic degraded faces: the degradations do what their definitions say, the set's
make-up follows its parameters, and the recognition view of it reads the same cached copy."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from visionzoo.fiqa.synthetic import DEGRADATIONS, degrade, write_degraded_faces
from visionzoo.recognition.synthetic import render_face, sample_identity

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


def test_recognition_view_shares_the_fiqa_sets_cache() -> None:
    # Different blocks would make each family rebuild the one cache folder for the other.
    fiqa = OmegaConf.load(CONFIGS / "synthetic_degraded_faces.yaml").synthetic
    rec = OmegaConf.load(CONFIGS / "synthetic_degraded_face_ids.yaml").synthetic
    assert OmegaConf.to_container(fiqa) == OmegaConf.to_container(rec)


def test_occlusion_patch_has_its_area_on_either_side() -> None:
    # A flat grey face: every changed pixel is the patch. At level 1 the patch is wider than
    # half the face: on either side it must keep its full width, from the border over the
    # centre (not vanish, not be cut at the border).
    size, image = 64, np.full((64, 64, 3), 128, np.uint8)
    w, h = int(size * 0.7), int(size * 0.75)
    sides = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out, _ = degrade(image, "occlusion", 1.0, rng)
        changed = (out != image).any(-1)
        cols = np.flatnonzero(changed.any(0))
        rows = np.flatnonzero(changed.any(1))
        assert changed.sum() == len(rows) * len(cols)  # one rectangle
        assert len(rows) == min(h, size - rows[0])
        assert len(cols) == w > size // 2
        sides.add("left" if cols[0] == 0 else "right")
        assert cols[0] == 0 or cols[-1] == size - 1
    assert sides == {"left", "right"}


def test_over_exposure_is_low_lights_mirror_image() -> None:
    rng = np.random.default_rng(0)
    face = render_face(sample_identity(rng), rng, 48)
    for level in (0.25, 1.0):
        over, _ = degrade(face, "over_exposure", level, rng)
        dark, _ = degrade(255 - face, "low_light", level, rng)
        assert np.abs(over.astype(int) - (255 - dark.astype(int))).max() <= 1
        # and it brightens: the mean rises with the level
        assert over.mean() > face.mean()


def test_set_make_up_follows_its_parameters(tmp_path: Path) -> None:
    write_degraded_faces(
        tmp_path, num_train_ids=2, num_val_ids=3, images_per_id=7, clean_per_id=3,
        levels=(0.5, 1.0), size=32, seed=1,
    )  # fmt: skip
    rows = list(csv.DictReader(open(tmp_path / "degradations.csv")))
    assert len(rows) == 5 * 7
    per_id = Counter(r["identity"] for r in rows if r["type"] == "none")
    assert set(per_id.values()) == {3}
    for r in rows:
        assert (tmp_path / r["path"]).is_file()
        assert float(r["quality"]) == 100 * (1 - float(r["level"]))
        assert r["type"] in ("none", *DEGRADATIONS)
    assert {r["path"].split("/")[0] for r in rows} == {"train", "val"}
