"""The pure-Python RecordIO reader reads what mx.recordio writes, and fails cleanly on damaged files."""
import struct

import mxnet as mx
import numpy as np
import pytest
from magiccards.data.recordio_reader import (
    read_at,
    read_index,
    read_records,
    unpack_image_record,
)
from magiccards.data.recordio_writer import MAGIC

from magiccards.errors import DataError

MAGIC_BYTES = struct.pack("<I", MAGIC)


def _write_with_mxnet(tmp_path, payloads):
    rec, idx = tmp_path / "x.rec", tmp_path / "x.idx"
    writer = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for i, (label, data) in enumerate(payloads):
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, label, i, 0), data))
    writer.close()
    return rec, idx


def test_reads_what_mxnet_writes_including_split_records(tmp_path):
    rng = np.random.default_rng(0)
    payloads = [(float(i), rng.bytes(int(n))) for i, n in enumerate(rng.integers(0, 3000, 20))]
    payloads.append((2.0, b"abcd" + MAGIC_BYTES * 3 + b"xyz" + MAGIC_BYTES))  # the magic inside: split records
    payloads.append((np.array([4, 5, 64, 48, 1, 0.1, 0.2, 0.3, 0.4], dtype=np.float32), MAGIC_BYTES + b"tail"))
    rec, idx = _write_with_mxnet(tmp_path, payloads)
    records = list(read_records(rec))
    assert len(records) == len(payloads)
    for record, (label, data) in zip(records, payloads):
        header, body = unpack_image_record(record)
        ref_header, ref_body = mx.recordio.unpack(record)
        assert body == data == ref_body
        np.testing.assert_array_equal(np.asarray(header.label), np.asarray(ref_header.label))
        assert header.flag == ref_header.flag and header.id == ref_header.id
    offsets = read_index(idx)
    assert sorted(offsets) == list(range(len(payloads)))
    picked = read_at(rec, [offsets[3], offsets[len(payloads) - 2]])
    assert unpack_image_record(picked[0])[1] == payloads[3][1]
    assert unpack_image_record(picked[1])[1] == payloads[-2][1]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-3], "truncated"),
    (lambda b: b[:5], "truncated"),
    (lambda b: b"\x00" * 16 + b, "bad magic number"),
])
def test_damaged_files_are_clear_errors(tmp_path, damage, message):
    rec, _ = _write_with_mxnet(tmp_path, [(1.0, b"hello world" * 10)])
    rec.write_bytes(damage(rec.read_bytes()))
    with pytest.raises(DataError, match=message):
        list(read_records(rec))


def test_a_garbage_index_is_a_clear_error(tmp_path):
    idx = tmp_path / "x.idx"
    idx.write_text("0\t0\nnot an index\n")
    with pytest.raises(DataError, match="line 2 is not 'key<TAB>offset'"):
        read_index(idx)
