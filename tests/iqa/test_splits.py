"""Splits by reference image: no reference (so no content) is shared between stages."""

from __future__ import annotations

import pytest

from visionzoo.core.io import DataError
from visionzoo.iqa.formats import QualityRecord
from visionzoo.iqa.splits import split_records, split_reference_ids


def _records(refs: int, per_ref: int = 5) -> list[QualityRecord]:
    return [
        QualityRecord(
            f"d/i{r:02d}_01_{k}.png", f"r/I{r:02d}.png", float(k), None, "01", k, f"I{r:02d}"
        )
        for r in range(1, refs + 1)
        for k in range(1, per_ref + 1)
    ]


def test_fractions_split_references_without_leaks() -> None:
    records = _records(20)
    split = split_records(records, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    refs = {s: {r.ref_id for r in v} for s, v in split.items()}
    assert [len(refs[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert not refs["train"] & refs["val"] and not refs["train"] & refs["test"]
    assert not refs["val"] & refs["test"]
    assert sum(len(v) for v in split.values()) == len(records)  # every image in one stage
    for stage, chosen in split.items():  # every image of a chosen reference goes along
        assert len(chosen) == 5 * len(refs[stage])


def test_the_split_is_seeded() -> None:
    ids = [f"I{r:02d}" for r in range(1, 21)]
    spec = {"train": 0.6, "val": 0.2, "test": 0.2}
    assert split_reference_ids(ids, spec, 3) == split_reference_ids(ids[::-1], spec, 3)
    assert split_reference_ids(ids, spec, 3) != split_reference_ids(ids, spec, 4)


def test_explicit_lists_in_any_case() -> None:
    split = split_records(_records(4), {"train": ["i01", "I02"], "val": ["I03"], "test": None}, 0)
    assert {r.ref_id for r in split["train"]} == {"I01", "I02"}
    assert {r.ref_id for r in split["val"]} == {"I03"} and split["test"] == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"train": ["I01", "I02"], "val": ["I02"]}, "in both train and val"),
        ({"train": ["I09"]}, "not in the dataset"),
        ({"train": 0.8, "val": 0.4}, "sum to ≤ 1"),
        ({"train": 0.6, "val": ["I01"]}, "every stage a fraction"),
        ({"train": 0.5, "val": 0.25, "test": 0.25}, "none of the 2 reference images"),
    ],
)
def test_bad_splits_are_refused(spec: dict, message: str) -> None:
    refs = 2 if "none of the 2" in message else 4
    with pytest.raises(DataError, match=message):
        split_records(_records(refs), spec, 0)
