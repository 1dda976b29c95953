"""MXNet RecordIO (``train.rec`` + ``train.idx``) read and written without mxnet.

insightface ships its training sets (MS1M, Glint360K, WebFace, ...) in this format. The byte
layout follows dmlc-core's ``recordio.h`` and mxnet's ``recordio.py``:

- a record is the magic ``0xced7230a`` (uint32 LE), a uint32 word whose upper 3 bits are a
  continuation flag (``cflag``) and lower 29 bits the chunk length, the chunk, and zero padding
  to a multiple of 4 bytes. A payload that holds the magic at a 4-byte-aligned offset is split
  there into chunks with ``cflag`` 1 (first), 2 (middle) and 3 (last); the reader joins them
  with the magic put back. ``cflag`` 0 is a record in one piece.
- a payload is an ``IRHeader`` (``<IfQQ``: flag, label, id, id2; 24 bytes), then ``flag``
  float32 labels when ``flag > 0`` (mxnet then writes 0 into ``label``), then the image bytes.
- ``.idx`` is text lines ``key<TAB>byte offset of the record's magic``.

insightface's layout: record 0 is a header with labels ``(a, b)``: images are keys ``1..a-1``
and keys ``a..b-1`` are one record per identity whose labels are its ``[start, end)`` image
keys. A plain file (no header) has one image per key and its label in the record.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from visionzoo.core.io import DataError, list_images, natural_key, open_image

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
_LENGTH_BITS = 29
_MAX_LENGTH = (1 << _LENGTH_BITS) - 1


class IRHeader(NamedTuple):
    """mxnet's image-record header: ``flag`` = number of float labels after it (0: the single
    ``label`` field holds the label), ``id``/``id2`` = free 64-bit ids (mxnet writes the key)."""

    flag: int
    label: float
    id: int
    id2: int


def _pad4(n: int) -> int:
    return (n + 3) & ~3


class RecordReader:
    """Random access to a ``.rec`` file through its ``.idx`` (or a scan when there is none).

    The file is memory-mapped lazily in each process, so a reader can be pickled into
    DataLoader workers and each opens its own map. ``len(reader)`` and ``keys`` count every
    record (header and identity records included); ``images()`` lists the image records only.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise DataError(f"record file {str(self.rec_path)!r} does not exist; check the path")
        default_idx = self.rec_path.with_suffix(".idx")
        self.idx_path = Path(idx_path) if idx_path is not None else default_idx
        self._map: mmap.mmap | None = None
        if self.idx_path.is_file():
            self._offsets = self._read_idx()
        elif idx_path is not None:
            raise DataError(f"index file {str(self.idx_path)!r} does not exist; check the path")
        else:  # no .idx beside the .rec: every record's offset comes from one scan
            self._offsets = self._scan()
        self.keys: list[int] = list(self._offsets)
        self._layout = self._detect_layout()

    # -- file access ------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_map"] = None  # each process maps the file itself
        return state

    def _buffer(self) -> mmap.mmap | bytes:
        if self._map is None:
            with open(self.rec_path, "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    return b""
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def close(self) -> None:
        """Release the memory map (it is reopened on the next read)."""
        if self._map is not None:
            self._map.close()
            self._map = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_idx(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for lineno, line in enumerate(self.idx_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            try:
                key, offset = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                raise DataError(
                    f"{self.idx_path}:{lineno}: expected 'key<TAB>offset', got {line!r}; "
                    "regenerate the .idx or pass idx_path=None after deleting it to scan the .rec"
                ) from None
            offsets[key] = offset
        return offsets

    def _record_at(self, offset: int, *, copy: bool = True) -> tuple[bytes, int]:
        """The payload of the record starting at ``offset`` (empty unless ``copy``) and the
        offset after it."""
        buf = self._buffer()
        size = len(buf)
        parts: list[bytes] = []
        while True:
            if offset + 8 > size:
                raise DataError(
                    f"{self.rec_path}: truncated record header at byte offset {offset} (file is "
                    f"{size} bytes); the file is incomplete — download or pack it again"
                )
            magic, word = struct.unpack_from("<II", buf, offset)
            if magic != MAGIC:
                raise DataError(
                    f"{self.rec_path}: bad record magic 0x{magic:08x} at byte offset {offset} "
                    f"(expected 0x{MAGIC:08x}); the file is corrupt or its .idx does not match it"
                )
            cflag, length = word >> _LENGTH_BITS, word & _MAX_LENGTH
            start = offset + 8
            if start + length > size:
                raise DataError(
                    f"{self.rec_path}: record at byte offset {offset} needs {length} bytes but the "
                    f"file ends after {size - start}; the file is truncated — download it again"
                )
            if copy:
                parts.append(bytes(buf[start : start + length]))
            offset = start + _pad4(length)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts), offset

    def _scan(self) -> dict[int, int]:
        """Offsets of all records in file order, keyed 0, 1, 2, ... (mxnet's sequential keys)."""
        offsets, offset, size = {}, 0, os.path.getsize(self.rec_path)
        while offset < size:
            offsets[len(offsets)] = offset
            _, offset = self._record_at(offset, copy=False)
        return offsets

    # -- records ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._offsets)

    def read(self, key: int) -> tuple[IRHeader, tuple[float, ...], bytes]:
        """Record ``key`` as ``(header, labels, image_bytes)``; ``labels`` are the ``flag``
        float labels when ``flag > 0``, else ``(header.label,)``."""
        if key not in self._offsets:
            raise DataError(f"{self.idx_path}: no record with key {key}")
        offset = self._offsets[key]
        payload, _ = self._record_at(offset)
        if len(payload) < IR_SIZE:
            raise DataError(
                f"{self.rec_path}: record {key} at byte offset {offset} is {len(payload)} bytes, "
                f"shorter than its {IR_SIZE}-byte header; the file is corrupt"
            )
        header = IRHeader(*struct.unpack_from(_IR_FORMAT, payload))
        end = IR_SIZE + 4 * header.flag
        if end > len(payload):
            raise DataError(
                f"{self.rec_path}: record {key} at byte offset {offset} declares {header.flag} "
                f"labels but holds {len(payload) - IR_SIZE} bytes after its header; corrupt file"
            )
        if header.flag > 0:
            labels = struct.unpack_from(f"<{header.flag}f", payload, IR_SIZE)
        else:
            labels = (header.label,)
        return header, tuple(labels), payload[end:]

    def _detect_layout(self) -> tuple[int, int] | None:
        """insightface's ``(first identity key, end)`` from record 0, or None (plain layout)."""
        if 0 not in self._offsets:
            return None
        header, labels, data = self.read(0)
        if header.flag < 2 or data:  # a header record carries no image
            return None
        first, end = labels[0], labels[1]
        if first != int(first) or end != int(end) or not 1 <= first <= end:
            return None
        first, end = int(first), int(end)
        missing = [k for k in (first - 1, end - 1) if k > 0 and k not in self._offsets]
        if missing:
            raise DataError(
                f"{self.rec_path}: header record 0 says images are keys 1..{first - 1} and "
                f"identities {first}..{end - 1}, but key {missing[0]} is not in "
                f"{self.idx_path}; the .idx belongs to another .rec"
            )
        return first, end

    @property
    def has_header(self) -> bool:
        """True for insightface's layout (record 0 is a header, identity ranges follow)."""
        return self._layout is not None

    def identity_of(self, key: int) -> int:
        """The identity label of image record ``key`` (the first label when there are several,
        as insightface's ``MXFaceDataset`` takes it)."""
        _, labels, _ = self.read(key)
        return int(labels[0])

    def identity_ranges(self) -> list[tuple[int, int]]:
        """insightface's per-identity ``[start, end)`` image keys, in identity-record order;
        empty for a plain file."""
        if self._layout is None:
            return []
        ranges = []
        for key in range(*self._layout):
            _, labels, _ = self.read(key)
            ranges.append((int(labels[0]), int(labels[1])))
        return ranges

    def images(self) -> list[tuple[int, int]]:
        """``(key, identity label)`` of every image record, in key order.

        insightface files are listed from their identity ranges (one read per identity, not
        per image); a file without ranges, or a plain file, reads every record's header."""
        if self._layout is None:
            return [(key, self.identity_of(key)) for key in sorted(self.keys)]
        out = []
        for start, end in self.identity_ranges():
            if end > start:
                label = self.identity_of(start)
                out.extend((key, label) for key in range(start, end))
        if not out:  # header without identity records: labels come from each image
            out = [(key, self.identity_of(key)) for key in range(1, self._layout[0])]
        return sorted(out)


class RecordWriter:
    """Writes a ``.rec`` + ``.idx`` pair that mxnet's ``MXIndexedRecordIO`` reads.

    Use as a context manager; ``write`` appends one record (key -> offset goes to the .idx)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path) -> None:
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        self._rec = open(self.rec_path, "wb")
        self._idx = open(self.idx_path, "w")
        self._keys: set[int] = set()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close both files."""
        self._rec.close()
        self._idx.close()

    def write(
        self,
        key: int,
        label: float,
        image_bytes: bytes,
        extra_labels: Sequence[float] | None = None,
    ) -> None:
        """Append record ``key``. Without ``extra_labels`` the header holds ``label`` (flag 0);
        with them the record carries ``[label, *extra_labels]`` as float labels, mxnet's
        ``pack`` convention (the header's label field is then 0)."""
        if key in self._keys:
            raise ValueError(f"{self.rec_path}: key {key} was already written; keys are unique")
        self._keys.add(key)
        if extra_labels is None:
            head, labels = struct.pack(_IR_FORMAT, 0, label, key, 0), b""
        else:
            values = [float(label), *map(float, extra_labels)]
            head = struct.pack(_IR_FORMAT, len(values), 0.0, key, 0)
            labels = struct.pack(f"<{len(values)}f", *values)
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        self._write_payload(head + labels + bytes(image_bytes))

    def _write_payload(self, payload: bytes) -> None:
        # Split wherever the magic sits at an aligned offset, as dmlc's RecordIOWriter does, so
        # a reader that scans for the magic never mistakes image bytes for a record start.
        if len(payload) > _MAX_LENGTH:
            raise ValueError(f"{self.rec_path}: a record is limited to {_MAX_LENGTH} bytes")
        chunks, start = [], 0
        for i in range(0, len(payload) - 3, 4):
            if payload[i : i + 4] == _MAGIC_BYTES:
                chunks.append(payload[start:i])
                start = i + 4
        chunks.append(payload[start:])
        out = io.BytesIO()
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            cflag = 0 if len(chunks) == 1 else 3 if last else 1 if n == 0 else 2
            out.write(struct.pack("<II", MAGIC, (cflag << _LENGTH_BITS) | len(chunk)))
            out.write(chunk)
            out.write(b"\0" * (_pad4(len(chunk)) - len(chunk)))
        self._rec.write(out.getvalue())


def _jpeg_bytes(path: Path, quality: int) -> bytes:
    out = io.BytesIO()
    open_image(path).convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def pack_identity_folders(folder: str | Path, out_prefix: str | Path, *, quality: int = 95) -> int:
    """Pack ``folder/<identity>/<image>`` into ``<out_prefix>.rec`` + ``.idx`` in insightface's
    layout; identities get labels 0, 1, ... in natural order of their folder names and images
    are re-encoded as RGB JPEG at ``quality``. Returns the number of images written."""
    folder, out_prefix = Path(folder), Path(out_prefix)
    if not folder.is_dir():
        raise DataError(f"identity folder {str(folder)!r} does not exist; check the path")
    identities = sorted((p for p in folder.iterdir() if p.is_dir()), key=natural_key)
    if not identities:
        raise DataError(f"{folder} has no sub-folders; expected one folder of images per identity")
    files = []
    for person in identities:
        images = list_images(person)
        if not images:
            raise DataError(f"identity folder {str(person)!r} holds no images; remove it")
        files.append(images)
    num_images = sum(map(len, files))
    first_identity = num_images + 1
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    rec = out_prefix.with_name(out_prefix.name + ".rec")
    idx = out_prefix.with_name(out_prefix.name + ".idx")
    with RecordWriter(rec, idx) as writer:
        writer.write(0, first_identity, b"", extra_labels=[first_identity + len(identities)])
        key, ranges = 1, []
        for label, images in enumerate(files):
            ranges.append((key, key + len(images)))
            for path in images:
                writer.write(key, float(label), _jpeg_bytes(path, quality))
                key += 1
        for n, (start, end) in enumerate(ranges):
            writer.write(first_identity + n, start, b"", extra_labels=[end])
    return num_images
