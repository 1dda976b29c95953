"""Verification ``.bin``: files as insightface (Python 3) and Python 2 wrote them load, checked
against the standard unpickler; pickles that would run code are refused without running it."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from visionzoo.core.io import DataError
from visionzoo.recognition.verification_bin import read_bin, write_bin

IMAGES = [b"\xff\xd8jpeg-0\xff\xd9", b"\xff\xd8\x80\x81-1", b"\xff\xd8two", b"\xff\xd8\xfe3"]


def _write_marker(path: str) -> None:
    Path(path).write_text("ran")


class _Payload:
    """Unpickles as ``func(*args)``: what a hostile .bin would do."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_write_then_read(tmp_path: Path) -> None:
    write_bin(tmp_path / "lfw.bin", IMAGES, [True, False])
    with open(tmp_path / "lfw.bin", "rb") as f:  # the layout insightface's load_bin expects
        bins, issame = pickle.load(f, encoding="bytes")
    assert bins == IMAGES and issame == [True, False]
    images, same = read_bin(tmp_path / "lfw.bin")
    assert images == IMAGES and same.dtype == bool and same.tolist() == [True, False]


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("kind", ["array", "numpy_scalars"])
def test_numpy_bool_issame_loads(tmp_path: Path, protocol: int, kind: str) -> None:
    same = np.array([False, True])
    obj = same if kind == "array" else list(same)  # a list of numpy.bool_ scalars
    (tmp_path / "a.bin").write_bytes(pickle.dumps((IMAGES, obj), protocol=protocol))
    images, got = read_bin(tmp_path / "a.bin")
    assert images == IMAGES and got.tolist() == [False, True]


def _python2_pickle(images: list[bytes], same: list[bool]) -> bytes:
    """A (bins, numpy bool array) pickle as Python 2's cPickle protocol 2 wrote it, opcode by
    opcode: images are BINSTRINGs (Python 2 str), the array goes through
    numpy.core.multiarray._reconstruct and its dtype state holds '|' as a str."""
    out = bytearray(b"\x80\x02](")  # PROTO 2, EMPTY_LIST, MARK
    for b in images:
        out += b"T" + struct.pack("<i", len(b)) + b  # BINSTRING
    out += b"e"  # APPENDS
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
    out += b"(K\x01K" + bytes([len(same)]) + b"\x85"  # state: version 1, shape (n,)
    out += b"cnumpy\ndtype\nU\x02b1K\x00K\x01\x87R"  # dtype('b1', 0, 1)
    out += b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # its state, BUILD
    out += b"\x89U" + bytes([len(same)]) + bytes(same) + b"tb"  # C order, raw bytes, BUILD
    out += b"\x86."  # TUPLE2, STOP
    return bytes(out)


def test_python2_file_loads_like_the_standard_unpickler(tmp_path: Path) -> None:
    data = _python2_pickle(IMAGES, [True, False])
    (tmp_path / "py2.bin").write_bytes(data)
    bins, issame = pickle.loads(data, encoding="bytes")  # reference: insightface's own call
    images, same = read_bin(tmp_path / "py2.bin")
    assert images == bins == IMAGES
    assert same.tolist() == issame.tolist() == [True, False]


@pytest.mark.parametrize("target", ["os.system", "marker function"])
def test_code_running_pickle_is_refused_without_running(tmp_path: Path, target: str) -> None:
    marker = tmp_path / "marker"
    if target == "os.system":
        payload, name = _Payload(os.system, f"touch {marker}"), os.system.__module__ + ".system"
    else:
        payload, name = _Payload(_write_marker, str(marker)), "_write_marker"
        # Control: the same payload does run under a plain unpickler.
        live = tmp_path / "live"
        pickle.loads(pickle.dumps(_Payload(_write_marker, str(live))))
        assert live.read_text() == "ran"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps((IMAGES, payload)))
    with pytest.raises(DataError, match=rf"evil\.bin.*refused.*{name}"):
        read_bin(tmp_path / "evil.bin")
    assert not marker.exists()


@pytest.mark.parametrize(
    "issame", [np.array([1, 0], np.int64), np.array([True, None], object)], ids=["int", "object"]
)
def test_arrays_other_than_bool_are_refused(tmp_path: Path, issame: np.ndarray) -> None:
    (tmp_path / "x.bin").write_bytes(pickle.dumps((IMAGES, issame)))
    with pytest.raises(DataError, match=r"x\.bin.*dtype"):
        read_bin(tmp_path / "x.bin")


def test_bad_structure_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "odd.bin").write_bytes(pickle.dumps((IMAGES[:3], [True])))
    with pytest.raises(DataError, match=r"odd\.bin.*3 images for 1 pairs"):
        read_bin(tmp_path / "odd.bin")
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"junk\.bin"):
        read_bin(tmp_path / "junk.bin")
