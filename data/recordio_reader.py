"""Reading MXNet RecordIO (.rec, .idx) in pure Python: what `mx.recordio` reads, without MXNet.

The counterpart of `recordio_writer.py` (the framing is described there). `inspect` reads through it,
so the dataset tools start without importing MXNet; a test reads the same files with `mx.recordio`
and compares. Works on FIFOs too (records are read strictly in order).
"""
from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from magiccards.errors import DataError

from .recordio_writer import MAGIC

_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)
_LENGTH_MASK = (1 << 29) - 1


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """`mx.recordio.IRHeader`: `label` is a float (flag 0) or `flag` float32 values."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def unpack_image_record(record: bytes) -> tuple[ImageHeader, bytes]:
    """(header, image bytes) of an image record, as `mx.recordio.unpack` gives them."""
    if len(record) < _IR_SIZE:
        raise DataError(f"a record of {len(record)} bytes is too short to hold an image header")
    flag, label, rid, id2 = struct.unpack(_IR_FORMAT, record[:_IR_SIZE])
    rest = record[_IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise DataError(f"a record announces {flag} label values but holds {len(rest)} bytes")
        label = np.frombuffer(rest, np.float32, flag)
        rest = rest[4 * flag:]
    return ImageHeader(flag, label, rid, id2), rest


def _frame(stream, name: str) -> tuple[int, bytes] | None:
    """(cflag, data) of the next frame, None at a clean end of the stream."""
    head = stream.read(8)
    if not head:
        return None
    if len(head) < 8:
        raise DataError(f"{name} is truncated (a record header is cut short)")
    magic, lrec = struct.unpack("<II", head)
    if magic != MAGIC:
        raise DataError(f"{name} is corrupt or not a RecordIO file (bad magic number)")
    length = lrec & _LENGTH_MASK
    data = stream.read(length + (-length) % 4)
    if len(data) < length:
        raise DataError(f"{name} is truncated (a record of {length} bytes is cut short)")
    return lrec >> 29, data[:length]


def _read_one(stream, name: str) -> bytes | None:
    first = _frame(stream, name)
    if first is None:
        return None
    cflag, data = first
    if cflag == 0:
        return data
    if cflag != 1:
        raise DataError(f"{name} is corrupt (a record starts with continuation flag {cflag})")
    parts = [data]
    while True:
        nxt = _frame(stream, name)
        if nxt is None:
            raise DataError(f"{name} is truncated (a split record has no last part)")
        cflag, data = nxt
        parts.append(data)
        if cflag == 3:
            return _MAGIC_BYTES.join(parts)
        if cflag != 2:
            raise DataError(f"{name} is corrupt (continuation flag {cflag} inside a split record)")


def read_records(path: Path, name: str | None = None, offsets: list[int] | None = None) -> Iterator[bytes]:
    """Every record of a .rec file (or FIFO), in order; DataError when it is corrupt or truncated.

    With `offsets` (a list; files only), each record's byte offset is appended to it as it is read."""
    name = name or str(path)
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {name}: {e.strerror or e}") from None
    with stream:
        yield from read_stream(stream, name, offsets)


def read_stream(stream, name: str, offsets: list[int] | None = None) -> Iterator[bytes]:
    """Every record of a binary stream (an open file, a FIFO, an io.BytesIO of a request body), in order."""
    while True:
        if offsets is not None:
            offsets.append(stream.tell())
        record = _read_one(stream, name)
        if record is None:
            return
        yield record


def read_index(idx: Path) -> dict[int, int]:
    """{key: byte offset} of an .idx file ('key<TAB>offset' lines); DataError when it is not one."""
    offsets = {}
    try:
        lines = Path(idx).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the index {idx} ({e})") from None
    for n, line in enumerate(lines, 1):
        fields = line.split("\t")
        try:
            key, offset = int(fields[0]), int(fields[1])
        except (ValueError, IndexError):
            raise DataError(f"{idx}: line {n} is not 'key<TAB>offset'") from None
        offsets[key] = offset
    return offsets


def read_at(rec: Path, offsets: list[int], name: str | None = None) -> list[bytes]:
    """The records starting at the given byte offsets of a .rec file."""
    name = name or str(rec)
    out = []
    with open(rec, "rb") as stream:
        for offset in offsets:
            stream.seek(offset)
            record = _read_one(stream, name)
            if record is None:
                raise DataError(f"{name}: no record at offset {offset}; its .idx does not match it")
            out.append(record)
    return out
