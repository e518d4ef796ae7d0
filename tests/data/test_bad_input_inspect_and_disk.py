"""No tracebacks, no litter: a full disk, unwritable outputs, bad inspect arguments, a garbage .idx."""
import json
import resource
import signal
import subprocess
import sys

import pytest
from magiccards.data.inspect import inspect_rec
from magiccards.data.pack import pack
from PIL import Image

from ..helpers import run_cli


def _full_disk(limit=8_000):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _cli_on_a_full_disk(*args):
    return subprocess.run([sys.executable, "-m", "magiccards.cli", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=_full_disk(), timeout=300)


def test_pack_on_a_full_disk_is_one_line_and_leaves_nothing(card_folders, tmp_path):
    r = _cli_on_a_full_disk("pack", card_folders, tmp_path / "rec", "--workers", "1")
    assert r.returncode == 1 and "error: cannot write the pack output" in r.stderr and "Traceback" not in r.stderr
    left = sorted(p.name for p in (tmp_path / "rec").glob("*")) if (tmp_path / "rec").exists() else []
    assert left == [], left


def test_synth_on_a_full_disk_is_one_line(tmp_path):
    r = _cli_on_a_full_disk("synth", tmp_path / "out", "--count", "40", "--size", "256", "--workers", "1")
    assert r.returncode == 1 and "error: cannot write the synth output" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "out").rglob(".*.tmp"))


@pytest.mark.parametrize("out", ["afile/out", "/proc/magiccards-out"])
def test_an_output_folder_that_cannot_exist(card_folders, tmp_path, out):
    (tmp_path / "afile").write_text("x")
    r = run_cli("pack", card_folders, tmp_path / out if not out.startswith("/") else out)
    assert r.returncode == 1 and "cannot create output folder" in r.stderr and "Traceback" not in r.stderr


def test_an_immutable_output_folder(card_folders, tmp_path):
    out = tmp_path / "rec"
    out.mkdir()
    subprocess.run(["chattr", "+i", str(out)], check=True)
    try:
        r = run_cli("pack", card_folders, out, "--workers", "1")
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    assert r.returncode == 1 and "error: cannot" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(out.iterdir()) == []


def test_coco_with_a_non_numeric_width(tmp_path):
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "a.jpg")
    Image.new("RGB", (64, 48), (10, 200, 10)).save(tmp_path / "b.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": "wide", "height": 48},
                      {"id": 2, "file_name": "b.jpg", "width": 64, "height": 1e9}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20]},
                           {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 20, 20]}],
           "categories": [{"id": 1, "name": "card"}]}
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    r = pack(tmp_path / "coco.json", tmp_path / "rec", val_fraction=0, workers=1, progress=False, log=lambda *a: None)
    assert r.problems["invalid image size"] == 1 and r.problems["zero-area box"] == 1  # height 1e9: no area left
    assert r.images == {"train": 1}


@pytest.fixture
def rec(card_folders, tmp_path):
    pack(card_folders, tmp_path / "rec", val_fraction=0, workers=1, progress=False, log=lambda *a: None)
    return tmp_path / "rec" / "train.rec"


def test_inspect_arguments_and_places(rec, tmp_path):
    r = run_cli("inspect", rec, "--samples", "-4")
    assert r.returncode == 1 and "--samples must be 0" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("inspect", rec, "--sheet", tmp_path)
    assert r.returncode == 1 and "is a folder" in r.stderr
    (tmp_path / "afile").write_text("x")
    r = run_cli("inspect", rec, "--sheet", tmp_path / "afile" / "sheet.png")
    assert r.returncode == 1 and "cannot write the contact sheet" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob(".*.tmp")) and not list(rec.parent.glob(".*.tmp"))


def test_a_garbage_or_stale_index_is_not_trusted(rec, tmp_path):
    reference = inspect_rec(rec, samples=6, progress=False, sheet=tmp_path / "ref.png")
    rec.with_suffix(".idx").write_text("garbage\n")
    assert inspect_rec(rec, samples=6, progress=False, sheet=tmp_path / "a.png")["records"] == reference["records"]
    lines = rec.with_suffix(".idx").write_text("".join(f"{i}\t{i * 8}\n" for i in range(reference["records"])))
    assert lines and inspect_rec(rec, samples=6, progress=False, sheet=tmp_path / "b.png")["records"] == 40
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "ref.png").read_bytes()
