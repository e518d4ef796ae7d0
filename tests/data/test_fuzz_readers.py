"""A small fuzzer: random truncations and byte flips of valid files, fed to every reader of the data room.

Every outcome must be a clean error (a UserError, which the CLI prints as one line) or a clean result
(bad items skipped and reported), never another exception, and never a hang. The cases are bounded and
seeded, so a failure names the case that reproduces it.
"""
from __future__ import annotations

import contextlib
import json
import random
import signal
import zlib
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from magiccards.data.formats import voc
from magiccards.data.load import load
from magiccards.data.recordio_reader import read_index, read_records, unpack_image_record
from PIL import Image

from magiccards.errors import UserError

CASES = 80  # per reader
SECONDS_PER_CASE = 20


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage: a truncation, flipped bits, a deleted or repeated stretch."""
    if not data:
        return data
    kind = rng.randrange(4)
    at = rng.randrange(len(data))
    if kind == 0:
        return data[:at]
    if kind == 1:
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    length = rng.randint(1, max(1, len(data) // 8))
    if kind == 2:
        return data[:at] + data[at + length:]
    return data[:at] + data[at:at + length] * 2 + data[at + length:]


@contextlib.contextmanager
def deadline(seconds: int, case: str):
    def hang(signum, frame):
        raise AssertionError(f"{case}: no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def clean_outcome(fn, case: str):
    """Run `fn`; a UserError or a result is clean, anything else fails the test naming `case`."""
    with deadline(SECONDS_PER_CASE, case):
        try:
            return fn()
        except UserError as e:
            assert str(e).strip() and "\n" not in str(e).strip(), f"{case}: error message {str(e)!r}"
            return e
        except Exception as e:  # noqa: BLE001 - the point of the fuzzer
            raise AssertionError(f"{case}: {type(e).__name__}: {e}") from e


def _fuzz_file(original: Path, call, seed: int) -> dict[str, int]:
    """Damage `original` CASES times (restoring it after each) and run `call()`; count the outcomes."""
    valid = original.read_bytes()
    rng = random.Random(seed)
    outcomes = {"error": 0, "result": 0}
    try:
        for case in range(CASES):
            original.write_bytes(mutate(valid, rng))
            outcome = clean_outcome(call, f"{original.name}, seed {seed}, case {case}")
            outcomes["error" if isinstance(outcome, UserError) else "result"] += 1
    finally:
        original.write_bytes(valid)
    return outcomes


@pytest.fixture
def rec(tmp_path):
    writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "a.idx"), str(tmp_path / "a.rec"), "w")
    rng = np.random.default_rng(0)
    for i in range(12):
        image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        label = [2, 5, i % 3, 0.1, 0.2, 0.6, 0.7] if i % 2 else float(i % 3)
        writer.write_idx(i, mx.recordio.pack_img(mx.recordio.IRHeader(0, label, i, 0), image, quality=90))
    writer.close()
    return tmp_path / "a.rec"


def test_recordio_reader(rec):
    def read():
        records = list(read_records(rec, rec.name))
        for record in records:
            unpack_image_record(record)
        return records
    outcomes = _fuzz_file(rec, read, seed=1)
    assert outcomes["error"] > 0 and outcomes["result"] > 0, outcomes  # both paths were taken


def test_recordio_index(rec):
    outcomes = _fuzz_file(rec.with_suffix(".idx"), lambda: read_index(rec.with_suffix(".idx")), seed=2)
    assert sum(outcomes.values()) == CASES


def _image(path: Path, colour=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(path)
    return path


def _voc_input(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    for name in ("a", "b"):
        _image(root / "images" / f"{name}.jpg")
        voc.write(root / "annotations" / f"{name}.xml", f"{name}.jpg", 64, 48,
                  [("card", 4, 4, 40, 30), ("king", 10, 10, 60, 44)])
    return root / "annotations" / "a.xml"


def _coco_input(root: Path) -> Path:
    for name in ("a", "b"):
        _image(root / "images" / f"{name}.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                      {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 20]},
                           {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10, 10, 40, 30]}],
           "categories": [{"id": 1, "name": "card"}, {"id": 2, "name": "king"}]}
    (root / "coco.json").write_text(json.dumps(doc))
    return root / "coco.json"


def _csv_input(root: Path) -> Path:
    for name in ("a", "b"):
        _image(root / f"{name}.jpg")
    (root / "boxes.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                    "a.jpg,64,48,card,4,4,40,30\nb.jpg,64,48,king,10,10,60,44\n")
    return root / "boxes.csv"


def _sagemaker_input(root: Path) -> Path:
    for name in ("a", "b"):
        _image(root / "images" / f"{name}.jpg")
        doc = {"file": f"{name}.jpg", "image_size": [{"width": 64, "height": 48, "depth": 3}],
               "annotations": [{"class_id": 0, "left": 4, "top": 4, "width": 30, "height": 20}],
               "categories": [{"class_id": 0, "name": "card"}]}
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{name}.json").write_text(json.dumps(doc))
    return root / "annotations" / "a.json"


def _manifest_input(root: Path) -> Path:
    lines = []
    for name in ("a", "b"):
        _image(root / "images" / f"{name}.jpg")
        lines.append(json.dumps({
            "source-ref": f"s3://bucket/cards/{name}.jpg",
            "boxes": {"image_size": [{"width": 64, "height": 48, "depth": 3}],
                      "annotations": [{"class_id": 0, "left": 4, "top": 4, "width": 30, "height": 20}]},
            "boxes-metadata": {"class-map": {"0": "card"}, "type": "groundtruth/object-detection"}}))
    (root / "out.manifest").write_text("\n".join(lines) + "\n")
    return root / "out.manifest"


# (format, writer of a valid input returning the file to damage, the path `load` reads)
FORMAT_CASES = {
    "voc": (_voc_input, lambda root: root),
    "coco": (_coco_input, lambda root: root / "coco.json"),
    "csv": (_csv_input, lambda root: root / "boxes.csv"),
    "sagemaker": (_sagemaker_input, lambda root: root),
    "manifest": (_manifest_input, lambda root: root / "out.manifest"),
}


@pytest.mark.parametrize("fmt", FORMAT_CASES)
def test_annotation_readers(tmp_path, fmt):
    write, path_of = FORMAT_CASES[fmt]
    damaged = write(tmp_path)
    images = tmp_path / "images" if fmt == "manifest" else None
    assert not isinstance(clean_outcome(lambda: load(path_of(tmp_path), fmt, images=images), fmt), UserError)
    _fuzz_file(damaged, lambda: load(path_of(tmp_path), fmt, images=images), seed=zlib.crc32(fmt.encode()))


def test_image_files_of_a_class_folder(tmp_path):
    """Damaged image files are the packer's job (decode, skip and count); here: the folder reader."""
    for c in ("card", "king"):
        for i in range(3):
            _image(tmp_path / "in" / c / f"{i}.png", colour=(40 * i, 90, 10))
    _fuzz_file(tmp_path / "in" / "card" / "0.png", lambda: load(tmp_path / "in", "folders"), seed=5)
