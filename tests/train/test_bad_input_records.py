"""Damaged records and stale indexes in a job's channels: left out and said, or refused, never a crash."""
import shutil

import mxnet as mx
import pytest
from magiccards.container.local_run import run_local

from magiccards.errors import TrainingFailed

from ..helpers import QUICK_HP, read_all

HP = dict(QUICK_HP, epochs="1")


def _cut_short(image: bytes) -> bytes:
    return image[: len(image) // 2]


def _bad_header(image: bytes) -> bytes:
    """A JPEG that still ends with its end marker, whose frame header says 0 x 0 pixels: not decodable."""
    sof = image.find(b"\xff\xc0")
    return image[: sof + 5] + b"\x00\x00\x00\x00" + image[sof + 9:]


def _damaged_copy(packed, tmp_path, damage: dict[int, callable]):
    """A copy of the pack folder whose train.rec has the records numbered in `damage` damaged."""
    data = tmp_path / "data"
    shutil.copytree(packed, data)
    records = read_all(packed / "train.rec")
    writer = mx.recordio.MXIndexedRecordIO(str(data / "train.idx"), str(data / "train.rec"), "w")
    for n, (header, image) in enumerate(records):
        writer.write_idx(n, mx.recordio.pack(header, damage[n](image) if n in damage else image))
    writer.close()
    return data, len(records)


@pytest.mark.parametrize("input_mode", ["File", "Pipe"])
def test_damaged_images_are_left_out_and_counted(packed_cards, tmp_path, input_mode):
    data, n = _damaged_copy(packed_cards, tmp_path, {3: _cut_short, 7: _bad_header})
    lines = []
    model = run_local(data, tmp_path / "job", HP, input_mode=input_mode, log=lines.append)
    assert (model / "model-card.json").is_file()
    note = [line for line in lines if "hold a damaged image (cut short or not decodable) and are left out" in line]
    assert note and note[0].startswith("note: 2 record(s) of ") and "(first: record 3)" in note[0], lines[-20:]
    assert any(f"{n - 2} training" in line for line in lines), lines[:20]


def test_too_many_damaged_images_are_refused(packed_cards, tmp_path):
    data, n = _damaged_copy(packed_cards, tmp_path, {i: _bad_header for i in range(0, 120, 5)})
    with pytest.raises(TrainingFailed) as info:
        run_local(data, tmp_path / "job", HP, log=lambda line: None)
    assert f"24 of the {n} records of train.rec hold a damaged image" in str(info.value)
    assert "Traceback" not in (tmp_path / "job" / "output" / "failure").read_text()


def test_a_stale_index_is_rebuilt(packed_cards, tmp_path):
    """An .idx of another .rec (here: the validation split's) would make the job read 40 of 120 images."""
    data = tmp_path / "data"
    shutil.copytree(packed_cards, data)
    shutil.copy(data / "validation.idx", data / "train.idx")
    lines = []
    run_local(data, tmp_path / "job", HP, log=lines.append)
    assert any("train.idx does not match train.rec" in line for line in lines), lines[:20]
    assert any("120 training / 40 validation images" in line for line in lines), lines[:20]
