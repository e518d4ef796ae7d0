import json

import pytest
from magiccards.data.inspect import inspect_rec
from magiccards.data.pack import pack
from PIL import Image

from magiccards.errors import DataError

from ..helpers import run_cli


def test_classification_stats_and_sheet(card_folders, tmp_path):
    pack(card_folders, tmp_path, val_fraction=0, workers=2, progress=False)
    stats = inspect_rec(tmp_path / "train.rec", samples=10, progress=False)
    assert stats["task"] == "classification" and stats["records"] == 40
    assert sum(stats["images_per_class"].values()) == 40 and len(stats["images_per_class"]) == 4
    assert set(stats["images_per_class"]) == set((tmp_path / "classes.txt").read_text().split())
    assert stats["image_size"]["most_common"] == "96x96"
    sheet = Image.open(stats["sheet"])
    assert sheet.format == "PNG" and sheet.size == (6 * 192, 2 * 192)
    bare = tmp_path / "bare"  # the same records without an .idx: the sheet is drawn from a second read
    bare.mkdir()
    (bare / "train.rec").write_bytes((tmp_path / "train.rec").read_bytes())
    inspect_rec(bare / "train.rec", classes=tmp_path / "classes.txt", samples=10, progress=False)
    assert (bare / "train.sheet.png").read_bytes() == (tmp_path / "train.sheet.png").read_bytes()
    charts = Image.open(tmp_path / "train.stats.png")  # two panels: class balance, image sizes
    assert charts.format == "PNG" and charts.width == 840 and stats["charts"] == str(tmp_path / "train.stats.png")


def test_detection_stats_match_the_annotations(raccoon, tmp_path):
    r = pack(raccoon, tmp_path, val_fraction=0, resize=200, workers=2, progress=False)
    stats = inspect_rec(tmp_path / "train.rec", sheet=tmp_path / "s.png", samples=6, progress=False)
    assert stats["task"] == "detection" and stats["records"] == r.images["train"]
    assert stats["objects_per_class"] == {"raccoon": r.counts["train"]["raccoon"]}
    b = stats["boxes"]
    assert b["total"] == r.counts["train"]["raccoon"] and 1 <= b["per_image_mean"] < 2
    assert 0 < b["relative_area"]["min"] < b["relative_area"]["mean"] < b["relative_area"]["max"] <= 1
    assert Image.open(tmp_path / "s.png").size == (6 * 192, 192)
    assert Image.open(tmp_path / "train.stats.png").width == 1680  # four panels: + box sizes, box centres


def test_records_without_objects(tmp_path):
    import mxnet as mx
    import numpy as np
    ok, jpeg = __import__("cv2").imencode(".jpg", np.zeros((30, 40, 3), np.uint8))
    writer = mx.recordio.MXRecordIO(str(tmp_path / "neg.rec"), "w")
    for i in range(3):  # what im2rec writes for an image listed with no object
        writer.write(mx.recordio.pack(mx.recordio.IRHeader(4, [4, 5, 40, 30], i, 0), jpeg.tobytes()))
    writer.close()
    stats = inspect_rec(tmp_path / "neg.rec", samples=3, progress=False)
    assert stats["task"] == "detection" and stats["boxes"] == {"total": 0, "per_image_mean": 0.0, "per_image_max": 0}
    assert Image.open(stats["charts"]).width == 1680 and Image.open(stats["sheet"]).size == (3 * 192, 192)


def test_classes_without_records_are_listed_with_zero(card_scenes, tmp_path):
    pack(card_scenes, tmp_path, val_fraction=0, workers=1, progress=False)
    names = (tmp_path / "classes.txt").read_text().split()
    (tmp_path / "more.txt").write_text("\n".join(names + ["unseen-card"]) + "\n")
    stats = inspect_rec(tmp_path / "train.rec", classes=tmp_path / "more.txt", samples=0, progress=False)
    assert list(stats["objects_per_class"]) == names + ["unseen-card"] and stats["objects_per_class"]["unseen-card"] == 0


def test_cli_json_and_text(card_scenes, tmp_path):
    pack(card_scenes, tmp_path, val_fraction=0, workers=1, progress=False)
    r = run_cli("inspect", tmp_path / "train.rec", "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["records"] == 12 and (tmp_path / "train.sheet.png").is_file()
    r = run_cli("inspect", tmp_path / "train.rec", "--samples", "0")
    assert "objects per class:" in r.stdout and "boxes:" in r.stdout


def test_corrupt_or_missing_rec(tmp_path):
    bad = tmp_path / "bad.rec"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="corrupt or not a RecordIO"):
        inspect_rec(bad, progress=False)
    r = run_cli("inspect", bad)
    assert r.returncode == 1 and "error:" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("inspect", tmp_path / "missing.rec")
    assert r.returncode == 1 and "does not exist" in r.stderr
    empty = tmp_path / "empty.rec"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="holds no record"):
        inspect_rec(empty, progress=False)
