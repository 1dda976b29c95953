"""RecordIO: the bytes are decoded by hand here with ``struct`` following dmlc-core's
``recordio.h`` / mxnet's ``recordio.py`` layout, not with the reader under test."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionzoo.core.io import DataError
from visionzoo.recognition.recordio import RecordReader, RecordWriter, pack_identity_folders

MAGIC = 0xCED7230A


def _jpeg(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def _hand_decode(data: bytes) -> list[tuple[int, bytes]]:
    """Every (offset, payload) of a .rec, joining continuation chunks (cflag 1/2/3)."""
    records, pos, parts, start = [], 0, [], 0
    while pos < len(data):
        magic, word = struct.unpack("<II", data[pos : pos + 8])
        assert magic == MAGIC
        cflag, length = word >> 29, word & ((1 << 29) - 1)
        if not parts:
            start = pos
        parts.append(data[pos + 8 : pos + 8 + length])
        padded = (length + 3) // 4 * 4
        assert data[pos + 8 + length : pos + 8 + padded] == b"\0" * (padded - length)
        pos += 8 + padded
        if cflag in (0, 3):
            records.append((start, struct.pack("<I", MAGIC).join(parts)))
            parts = []
    return records


def test_byte_layout_decoded_by_hand(tmp_path: Path) -> None:
    img_a, img_b = _jpeg(0), _jpeg(1)
    with RecordWriter(tmp_path / "x.rec", tmp_path / "x.idx") as w:
        w.write(5, 3.0, img_a)
        w.write(9, 7.0, img_b, extra_labels=[1.5, 2.5])
    data = (tmp_path / "x.rec").read_bytes()
    # First record: magic, cflag 0 + length, IRHeader(flag 0, label 3, id = key, id2 0), JPEG.
    magic, word = struct.unpack_from("<II", data, 0)
    assert magic == MAGIC and word >> 29 == 0 and word & ((1 << 29) - 1) == 24 + len(img_a)
    assert struct.unpack_from("<IfQQ", data, 8) == (0, 3.0, 5, 0)
    assert data[32 : 32 + len(img_a)] == img_a and img_a[:2] == b"\xff\xd8"
    records = _hand_decode(data)
    (off_a, pay_a), (off_b, pay_b) = records
    # Second record: flag = 3 float labels [label, *extra], header label 0 (mxnet's pack).
    assert struct.unpack_from("<IfQQ", pay_b) == (3, 0.0, 9, 0)
    assert struct.unpack_from("<3f", pay_b, 24) == (7.0, 1.5, 2.5)
    assert pay_b[36:] == img_b
    assert off_b % 4 == 0 and off_b == 8 + (24 + len(img_a) + 3) // 4 * 4
    idx = [line.split("\t") for line in (tmp_path / "x.idx").read_text().splitlines()]
    assert idx == [["5", str(off_a)], ["9", str(off_b)]]

    reader = RecordReader(tmp_path / "x.rec")
    assert len(reader) == 2 and reader.keys == [5, 9] and not reader.has_header
    header, labels, image = reader.read(9)
    assert (header.flag, labels, image) == (3, (7.0, 1.5, 2.5), img_b)
    assert reader.read(5)[1:] == ((3.0,), img_a)
    assert reader.images() == [(5, 3), (9, 7)]


def test_magic_inside_payload_is_split_like_dmlc(tmp_path: Path) -> None:
    # 24-byte header + 4 bytes puts the magic at payload offset 28 (4-aligned): dmlc splits
    # the record there into a cflag-1 chunk and a cflag-3 chunk, dropping the magic itself.
    body = b"abcd" + struct.pack("<I", MAGIC) + b"tail!"
    with RecordWriter(tmp_path / "m.rec", tmp_path / "m.idx") as w:
        w.write(0, 1.0, body)
    data = (tmp_path / "m.rec").read_bytes()
    head = struct.pack("<IfQQ", 0, 1.0, 0, 0)
    expected = (
        struct.pack("<II", MAGIC, (1 << 29) | 28) + head + b"abcd"
        + struct.pack("<II", MAGIC, (3 << 29) | 5) + b"tail!" + b"\0\0\0"
    )  # fmt: skip
    assert data == expected
    assert RecordReader(tmp_path / "m.rec").read(0)[2] == body


def _folders(root: Path, counts: list[int]) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images = []
    for i, n in enumerate(counts):
        person = root / f"p{i + 1}"  # p1, p2, p10: natural order, not p1, p10, p2
        person.mkdir(parents=True)
        smooth = []
        for k in range(n):
            # Smooth colour ramps: JPEG at quality 95 keeps them within a few grey levels.
            ramp = np.linspace(0, 1, 32)[None, :, None] * rng.uniform(-80, 80, 3)
            img = np.broadcast_to(rng.uniform(90, 160, 3) + ramp, (32, 32, 3)).astype(np.uint8)
            Image.fromarray(img).save(person / f"{k}.png")
            smooth.append(img)
        images.append(smooth)
    return images


def test_pack_identity_folders_insightface_layout(tmp_path: Path) -> None:
    originals = _folders(tmp_path / "ids", [2, 3, 1])  # p1, p2, p3
    (tmp_path / "ids" / "p10").mkdir()
    Image.fromarray(originals[0][0]).save(tmp_path / "ids" / "p10" / "0.png")
    originals.append([originals[0][0]])
    n = pack_identity_folders(tmp_path / "ids", tmp_path / "out" / "train")
    assert n == 7
    records = _hand_decode((tmp_path / "out" / "train.rec").read_bytes())
    payloads = [p for _, p in records]
    # Record 0: header, flag 2, labels (first identity key = N + 1, end = N + 1 + ids), no image.
    assert struct.unpack_from("<I", payloads[0])[0] == 2
    assert struct.unpack_from("<2f", payloads[0], 24) == (8.0, 12.0) and len(payloads[0]) == 32
    # Identity records 8..11: [start, end) image keys, in natural folder order p1 p2 p3 p10.
    ranges = [struct.unpack_from("<2f", p, 24) for p in payloads[8:12]]
    assert ranges == [(1.0, 3.0), (3.0, 6.0), (6.0, 7.0), (7.0, 8.0)]
    # Image records 1..7: flag 0, label = identity, JPEG close to the source image.
    flat = [(label, img) for label, imgs in enumerate(originals) for img in imgs]
    for payload, (label, img) in zip(payloads[1:8], flat, strict=True):
        flag, value, _, _ = struct.unpack_from("<IfQQ", payload)
        assert (flag, value) == (0, float(label)) and payload[24:26] == b"\xff\xd8"
        decoded = np.asarray(Image.open(io.BytesIO(payload[24:])).convert("RGB"), float)
        assert np.abs(decoded - img).mean() < 4

    reader = RecordReader(tmp_path / "out" / "train.rec", tmp_path / "out" / "train.idx")
    assert reader.has_header and len(reader) == 12
    assert reader.identity_ranges() == [(1, 3), (3, 6), (6, 7), (7, 8)]
    assert reader.images() == [(k, label) for k, (label, _) in enumerate(flat, 1)]
    assert reader.identity_of(4) == 1


def test_scan_without_idx_and_pickling(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "s.rec", tmp_path / "s.idx") as w:
        for key in range(4):
            w.write(key, float(key % 2), _jpeg(key))
    (tmp_path / "s.idx").unlink()
    reader = RecordReader(tmp_path / "s.rec")  # no .idx: offsets come from a scan
    assert reader.images() == [(0, 0), (1, 1), (2, 0), (3, 1)]
    clone = pickle.loads(pickle.dumps(reader))  # what a DataLoader worker receives
    assert clone._map is None and clone.read(2)[2] == _jpeg(2)


def test_corrupt_and_truncated_files_name_file_and_offset(tmp_path: Path) -> None:
    with RecordWriter(tmp_path / "c.rec", tmp_path / "c.idx") as w:
        w.write(1, 0.0, _jpeg(0))
        w.write(2, 0.0, _jpeg(1))
    data = bytearray((tmp_path / "c.rec").read_bytes())
    second = int((tmp_path / "c.idx").read_text().splitlines()[1].split("\t")[1])
    bad = tmp_path / "bad.rec"
    bad.write_bytes(data[:second] + b"\0\0\0\0" + data[second + 4 :])
    reader = RecordReader(bad, tmp_path / "c.idx")
    with pytest.raises(DataError, match=rf"bad\.rec.*magic.*offset {second}"):
        reader.read(2)
    cut = tmp_path / "cut.rec"
    cut.write_bytes(data[: second + 20])
    with pytest.raises(DataError, match=rf"cut\.rec.*offset {second}.*truncated"):
        RecordReader(cut, tmp_path / "c.idx").read(2)
    with pytest.raises(DataError, match=r"cut\.rec.*offset"):
        RecordReader(cut)  # the scan meets the same truncation
