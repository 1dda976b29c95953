"""The synthetic set: the documented MOS rule, the TID2013 layout read back by the TID2013
reader, and distortions that grow with their level (measured with scikit-image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from visionzoo.core.io import read_rgb
from visionzoo.core.synthetic import ensure_synthetic
from visionzoo.iqa.formats import read_tid2013
from visionzoo.iqa.synthetic import TYPES, rule_mos, rule_std


def test_the_rule_as_documented() -> None:
    # MOS = 8 − 7 · w_t · l / 5 with w = blur 1.0, noise 0.9, jpeg 0.8, contrast 0.7, colour 0.6
    assert rule_mos("blur", 5) == pytest.approx(1.0)
    assert rule_mos("noise", 3) == pytest.approx(4.22)
    assert rule_mos("jpeg", 1) == pytest.approx(6.88)
    assert rule_mos("contrast", 2) == pytest.approx(6.04)
    assert rule_mos("colour", 1) == pytest.approx(7.16)
    assert rule_std(4) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        rule_mos("blur", 6)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iqa") / "set"
    return ensure_synthetic("iqa_distortions", root, num_references=2, size=48, seed=0)


def test_written_in_the_tid2013_layout_and_read_back(synthetic: Path) -> None:
    records = read_tid2013(synthetic)
    assert len(records) == 2 * 5 * 5
    assert {r.ref_id for r in records} == {"I01", "I02"}
    for r in records:
        kind = TYPES[int(r.distortion) - 1]
        assert r.mos == pytest.approx(rule_mos(kind, r.level), abs=1e-5)
        assert r.std == pytest.approx(rule_std(r.level), abs=1e-5)
        assert Path(r.reference).stem == r.ref_id


def test_distortions_grow_with_their_level(synthetic: Path) -> None:
    records = read_tid2013(synthetic)
    for kind_index, kind in enumerate(TYPES, start=1):
        rows = sorted(
            (r for r in records if r.ref_id == "I01" and int(r.distortion) == kind_index),
            key=lambda r: r.level,
        )
        ref = read_rgb(synthetic / rows[0].reference)
        dist = [read_rgb(synthetic / r.distorted) for r in rows]
        if kind in ("blur", "noise", "jpeg"):
            measured = [peak_signal_noise_ratio(ref, d) for d in dist]  # falls with the level
            assert np.all(np.diff(measured) < 0), (kind, measured)
        elif kind == "contrast":
            spread = [d.astype(float).std() for d in dist]
            assert np.all(np.diff(spread) < 0), spread
        else:
            chroma = [np.ptp(d.astype(float), axis=2).mean() for d in dist]
            assert np.all(np.diff(chroma) < 0), chroma
            assert chroma[-1] < 1.0  # level 5 is grey
