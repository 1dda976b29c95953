"""Train / val / test splits of an image-quality set by reference image, so no content is seen
in training and again at test time (the protocol of LIVE, TID2013 and KADID-10k papers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from visionzoo.core.io import DataError
from visionzoo.iqa.formats import QualityRecord

STAGES = ("train", "val", "test")


def split_reference_ids(
    ref_ids: Sequence[str], spec: Mapping[str, float | Sequence[str] | None], seed: int
) -> dict[str, list[str]]:
    """Reference ids per stage from ``spec``: fractions (``{train: 0.6, val: 0.2, test: 0.2}``:
    a seeded shuffle of the sorted ids, cut in that order; each stage with a fraction > 0 gets at
    least one id) or explicit id lists (``{train: [I01, I02], ...}``, case-insensitive). A stage
    that is absent or ``null`` gets no ids. Raises a ``DataError`` on overlaps or unknown ids."""
    ids = sorted({r.upper() for r in ref_ids})
    fractions = {s: v for s, v in spec.items() if isinstance(v, int | float) and v is not None}
    lists = {s: v for s, v in spec.items() if v is not None and s not in fractions}
    unknown_stage = set(spec) - set(STAGES)
    if unknown_stage:
        raise DataError(f"data.splits has stages {sorted(unknown_stage)}; use train, val, test")
    if fractions and lists:
        raise DataError("data.splits: give every stage a fraction, or every stage an id list")
    out: dict[str, list[str]] = {s: [] for s in STAGES}
    if fractions:
        if any(f < 0 for f in fractions.values()) or sum(fractions.values()) > 1 + 1e-9:
            raise DataError(f"data.splits={dict(spec)}: fractions must be ≥ 0 and sum to ≤ 1")
        order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        start = 0
        for stage in STAGES:
            f = fractions.get(stage, 0.0)
            n = max(1, round(f * len(ids))) if f > 0 else 0
            out[stage] = order[start : start + n]
            start += n
            if f > 0 and not out[stage]:
                raise DataError(
                    f"data.splits.{stage}={f}: none of the {len(ids)} reference images is left "
                    "for it; lower the other fractions or use more reference images"
                )
        return out
    known = set(ids)
    for stage, chosen in lists.items():
        wanted = [str(c).upper() for c in chosen]
        missing = [c for c in wanted if c not in known]
        if missing:
            raise DataError(
                f"data.splits.{stage}: reference ids {missing[:5]} are not in the dataset "
                f"(it has {', '.join(ids[:5])}, ...)"
            )
        out[stage] = wanted
    for a in STAGES:
        for b in STAGES[STAGES.index(a) + 1 :]:
            shared = sorted(set(out[a]) & set(out[b]))
            if shared:
                raise DataError(
                    f"data.splits: reference ids {shared[:5]} are in both {a} and {b}; "
                    "splits must not share reference images"
                )
    return out


def split_records(
    records: Sequence[QualityRecord], spec: Mapping[str, float | Sequence[str] | None], seed: int
) -> dict[str, list[QualityRecord]]:
    """The records of each stage: those whose reference is in the stage's ids
    (``split_reference_ids``)."""
    ids = split_reference_ids([r.ref_id for r in records], spec, seed)
    return {s: [r for r in records if r.ref_id.upper() in set(ids[s])] for s in STAGES}
