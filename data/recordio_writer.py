"""Writing MXNet RecordIO (.rec + .idx) in pure Python, byte for byte what mx.recordio writes.

`pack` uses it so the writing process never loads MXNet (about 1.2 s of import, most of a small
pack's time: bench/bench_pack.py). Every reader in the project, and the tests, use MXNet's own
`mx.recordio` and `mx.io` readers on the result.

Framing (dmlc-core recordio.h): [uint32 magic][uint32 lrec][data][pad to 4], lrec = cflag << 29 | length;
where the magic number appears at a 4-byte-aligned offset of the data, the record is split there
(cflag 1 = first part, 2 = middle, 3 = last) and the reader puts the magic back.
Image records start with IRHeader(flag, label, id, id2) packed as 'IfQQ'; when the label is an
array, flag is its length and the float32 values follow the header.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "<IfQQ"


def pack_image_record(label, record_id: int, data: bytes, id2: int = 0) -> bytes:
    """The payload of an image record, as `mx.recordio.pack(IRHeader(0, label, id, id2), data)`."""
    if np.ndim(label) == 0:
        return struct.pack(_IR_FORMAT, 0, float(label), record_id, id2) + data
    values = np.asarray(label, dtype=np.float32).ravel()
    return struct.pack(_IR_FORMAT, values.size, 0.0, record_id, id2) + values.tobytes() + data


def _frames(buf: bytes):
    n = len(buf)
    start = 0
    lower = n & ~3
    pos = buf.find(_MAGIC_BYTES, 0, lower)
    while pos != -1:
        if pos % 4 == 0:
            yield (1 if start == 0 else 2), buf[start:pos]
            start = pos + 4
        pos = buf.find(_MAGIC_BYTES, pos + 1, lower)
    yield (3 if start else 0), buf[start:]


class IndexedRecordWriter:
    """Append records to `rec`, their offsets to `idx` (one 'key<TAB>offset' line each)."""

    def __init__(self, idx: Path, rec: Path):
        self._rec = open(rec, "wb")
        self._idx = open(idx, "w")

    def write_idx(self, key: int, buf: bytes) -> None:
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        if len(buf) >= 1 << 29:
            raise ValueError("a RecordIO record must be smaller than 512 MiB")
        out = []
        for cflag, part in _frames(buf):
            out.append(_MAGIC_BYTES + struct.pack("<I", (cflag << 29) | len(part)) + part)
        pad = (-len(buf)) % 4
        self._rec.write(b"".join(out) + b"\0" * pad)

    def close(self) -> None:
        self._rec.close()
        self._idx.close()
