"""Every bad input of the pack issue: a clear message, counted and listed, and no partial .rec."""
import io
import json
import shutil

import numpy as np
import pytest
from magiccards.data.formats import voc
from magiccards.data.pack import pack
from PIL import Image

from magiccards.errors import DataError

from ..helpers import read_all, run_cli


def _jpeg(path, size=(48, 40), mode="RGB", colour=(200, 30, 30), fmt="JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    img.putpixel((0, 0), tuple(np.random.default_rng(len(str(path))).integers(0, 255, 3).tolist()))
    img.convert(mode).save(path, fmt)
    return path


def _classes(tmp_path, n=2, per=4):
    root = tmp_path / "in"
    for c in range(n):
        for i in range(per):
            _jpeg(root / f"class{c}" / f"{i}.jpg", colour=(40 * c, 10 * i, 90))
    return root


def _report(out):
    return json.loads((out / "pack-report.json").read_text())


def _kinds(out):
    return {p["kind"] for p in _report(out)["problems"]}


def test_corrupt_truncated_and_non_image_files_are_skipped(tmp_path):
    root = _classes(tmp_path)
    (root / "class0" / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    full = _jpeg(tmp_path / "big.jpg", size=(300, 300)).read_bytes()
    (root / "class1" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "class1" / "notes.txt").write_text("hello")
    r = pack(root, tmp_path / "out", val_fraction=0, workers=2, progress=False)
    assert r.images["train"] == 8 and r.skipped == 2
    problems = _report(tmp_path / "out")["problems"]
    by_item = {p["item"]: p for p in problems}
    assert by_item["class0/garbage.jpg"]["kind"] == "corrupt image"
    assert by_item["class1/truncated.jpg"]["kind"] == "corrupt image"
    assert any(p["kind"] == "not an image" and p["item"].endswith("notes.txt") for p in problems)


def test_cli_lists_skipped_items(tmp_path):
    root = _classes(tmp_path)
    (root / "class0" / "garbage.jpg").write_bytes(b"nope")
    r = run_cli("pack", root, tmp_path / "out", "--val-fraction", "0")
    assert r.returncode == 0
    assert "1 image(s) skipped" in r.stderr and "corrupt image: class0/garbage.jpg" in r.stderr


def test_empty_and_unidentified_files_say_so(tmp_path):
    root = _classes(tmp_path)
    (root / "class0" / "empty.jpg").write_bytes(b"")
    (root / "class1" / "text.png").write_bytes(b"just some words")
    pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    reasons = {p["item"]: p["reason"] for p in _report(tmp_path / "out")["problems"]}
    assert reasons["class0/empty.jpg"] == "empty file; skipped"
    assert reasons["class1/text.png"].startswith("not an image in any format")
    assert "BytesIO" not in json.dumps(reasons)


def test_file_names_that_would_break_a_lst_row_are_skipped(tmp_path):
    root = _classes(tmp_path)
    _jpeg(root / "class0" / "tab\there.jpg")
    _jpeg(root / "class1" / "line\nbreak.jpg")
    r = run_cli("pack", root, tmp_path / "out", "--val-fraction", "0")
    assert r.returncode == 0 and "unusable file name: class0/tab\\there.jpg" in r.stderr
    assert "2 problem(s); 2 image(s) skipped" in r.stderr
    rows = [line.split("\t") for line in (tmp_path / "out" / "train.lst").read_text().splitlines()]
    assert len(rows) == 8 and all(len(row) == 3 for row in rows)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    root = _classes(tmp_path)
    ramp = np.tile(np.linspace(0, 65535, 64), (48, 1)).astype(np.uint16)  # black to white, left to right
    Image.fromarray(ramp).save(root / "class0" / "deep.png")
    pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    row = next(r for r in (tmp_path / "out" / "train.lst").read_text().splitlines() if r.endswith("deep.png"))
    records = dict((int(h.id), d) for h, d in read_all(tmp_path / "out" / "train.rec"))
    grey = np.asarray(Image.open(io.BytesIO(records[int(row.split("\t")[0])])).convert("L"), dtype=float)
    assert abs(grey.mean() - 127.5) < 4 and grey[:, :4].mean() < 10 and grey[:, -4:].mean() > 245


@pytest.mark.parametrize("inside", [".", "rec", "class0/rec"])
def test_output_folder_inside_the_input_is_not_read(tmp_path, inside):
    root = _classes(tmp_path)
    (root / "README.txt").write_text("my cards")
    out = root / inside
    for _ in range(2):  # the second pack sees the first one's files
        r = pack(root, out, val_fraction=0.25, workers=1, progress=False)
        assert r.images == {"train": 6, "validation": 2} and r.problems == {}


def test_a_repack_leaves_no_stale_split(tmp_path):
    root = _classes(tmp_path)
    pack(root, tmp_path / "out", val_fraction=0.25, workers=1, progress=False)
    assert (tmp_path / "out" / "validation.rec").is_file()
    pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "classes.txt", "pack-report.json", "train.idx", "train.lst", "train.rec"]


def test_empty_class_folder_is_reported_and_left_out(tmp_path):
    root = _classes(tmp_path, n=3)
    shutil.rmtree(root / "class2")
    (root / "class2").mkdir()
    r = pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    assert r.classes == ["class0", "class1"]
    assert "empty class" in _kinds(tmp_path / "out")


def test_class_folder_not_in_the_given_classes_is_skipped_and_counted(tmp_path):
    root = _classes(tmp_path, n=3)
    (tmp_path / "classes.txt").write_text("class1\nclass0\n")
    r = pack(root, tmp_path / "out", classes=tmp_path / "classes.txt", val_fraction=0, workers=1, progress=False)
    assert r.classes == ["class1", "class0"] and r.images["train"] == 8 and r.skipped == 4
    assert r.problems == {"unknown class": 1}


def test_duplicate_images_are_packed_once(tmp_path):
    root = _classes(tmp_path)
    shutil.copy(root / "class0" / "0.jpg", root / "class1" / "copy.jpg")
    r = pack(root, tmp_path / "out", val_fraction=0, workers=2, progress=False)
    assert r.images["train"] == 8 and r.skipped == 1
    assert "duplicate image" in _kinds(tmp_path / "out")


@pytest.mark.parametrize("mode, fmt, suffix", [("CMYK", "JPEG", "jpg"), ("L", "JPEG", "jpg"),
                                                ("RGBA", "PNG", "png"), ("P", "PNG", "png"), ("LA", "PNG", "png")])
def test_colour_modes_become_rgb(tmp_path, mode, fmt, suffix):
    root = _classes(tmp_path)
    _jpeg(root / "class0" / f"odd.{suffix}", mode=mode, fmt=fmt)
    r = pack(root, tmp_path / "out", val_fraction=0, pass_through=(mode == "CMYK"), workers=1, progress=False)
    assert r.images["train"] == 9
    for _, data in read_all(tmp_path / "out" / "train.rec"):
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.mode == "RGB"


def _voc(tmp_path, objects, size=(100, 80), name="a"):
    root = tmp_path / "voc"
    _jpeg(root / "images" / f"{name}.jpg", size=size, colour=(len(name) * 20, 100, 100))
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    voc.write(root / "annotations" / f"{name}.xml", f"{name}.jpg", *size, objects)
    return root


def test_bad_boxes_are_dropped_or_clipped(tmp_path):
    root = _voc(tmp_path, [("card", 10, 10, 50, 50),      # fine
                           ("card", 10, 10, 10, 40),      # zero area
                           ("card", 200, 200, 300, 300),  # outside
                           ("card", 60, 40, 140, 90),     # partly outside: clipped
                           ("card", 10, 10, 50, 50)])     # repeated
    r = pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    kinds = _kinds(tmp_path / "out")
    assert {"zero-area box", "box outside image", "box clipped", "duplicate box"} <= kinds
    (header, _), = read_all(tmp_path / "out" / "train.rec")
    objects = np.asarray(header.label)[4:].reshape(-1, 5)
    assert np.allclose(objects, [[0, 0.1, 0.125, 0.5, 0.625], [0, 0.6, 0.5, 1.0, 1.0]])
    assert r.counts["train"] == {"card": 2}


def test_unknown_classes_orphans_and_missing_images(tmp_path):
    root = _voc(tmp_path, [("card", 10, 10, 50, 50), ("dragon", 5, 5, 30, 30)], name="a")
    _voc(tmp_path, [("dragon", 5, 5, 30, 30)], name="bb")           # only an unknown class: no objects left
    _jpeg(root / "images" / "lonely.jpg")                              # image without annotation
    voc.write(root / "annotations" / "ghost.xml", "ghost.jpg", 10, 10, [("card", 1, 1, 5, 5)])  # no image
    (tmp_path / "classes.txt").write_text("card\n")
    r = pack(root, tmp_path / "out", classes=tmp_path / "classes.txt", val_fraction=0, workers=1, progress=False)
    assert r.images["train"] == 1 and r.skipped == 2  # bb.jpg (no known object) and lonely.jpg
    kinds = _kinds(tmp_path / "out")
    assert {"unknown class", "no objects", "image without annotation", "annotation without image"} <= kinds


def test_dangling_symlinks_are_reported_as_broken_links(tmp_path):
    root = _classes(tmp_path)
    (root / "class0" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")           # in a class folder
    voc_root = _voc(tmp_path, [("card", 10, 10, 50, 50)], name="a")
    voc.write(voc_root / "annotations" / "b.xml", "b.jpg", 64, 64, [("card", 1, 1, 30, 30)])
    (voc_root / "images" / "b.jpg").symlink_to(tmp_path / "moved-away.jpg")      # named by an annotation
    r = pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    assert r.images["train"] == 8
    broken = [p for p in _report(tmp_path / "out")["problems"] if p["kind"] == "broken link"]
    assert len(broken) == 1 and "deleted.jpg, which does not exist" in broken[0]["reason"], broken
    pack(voc_root, tmp_path / "voc-out", val_fraction=0, workers=1, progress=False)
    details = [p["reason"] for p in _report(tmp_path / "voc-out")["problems"]]
    assert any("is a broken link (to " in d and "moved-away.jpg" in d for d in details), details


def test_corrupt_annotation_is_reported(tmp_path):
    root = _voc(tmp_path, [("card", 10, 10, 50, 50)])
    (root / "annotations" / "broken.xml").write_text("<annotation><object>")
    pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    assert "corrupt annotation" in _kinds(tmp_path / "out")


def test_nothing_usable_is_fatal_and_leaves_no_rec(tmp_path):
    root = tmp_path / "in"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.jpg").write_bytes(b"garbage" + c.encode())
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no image of the train"):
        pack(root, out, val_fraction=0, workers=2, progress=False)
    assert not list(out.glob("*.rec")) and not list(out.glob(".*tmp"))
    r = run_cli("pack", root, out, "--val-fraction", "0")
    assert r.returncode == 1 and "error: no image of the train" in r.stderr and "Traceback" not in r.stderr


def test_existing_output_survives_a_failed_pack(tmp_path):
    root = _classes(tmp_path)
    out = tmp_path / "out"
    pack(root, out, val_fraction=0, workers=1, progress=False)
    before = (out / "train.rec").read_bytes()
    for p in root.rglob("*.jpg"):
        p.write_bytes(b"broken now")
    with pytest.raises(DataError):
        pack(root, out, val_fraction=0, workers=1, progress=False)
    assert (out / "train.rec").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--val-fraction", "1.5"], "--val-fraction must be in"),
    (["--quality", "0"], "--quality must be between"),
    (["--resize", "2"], "--resize"),
    (["--format", "voc"], "no usable image"),
])
def test_bad_options_exit_1_with_a_message(tmp_path, args, message):
    root = _classes(tmp_path)
    r = run_cli("pack", root, tmp_path / "out", *args)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_missing_or_unknown_input(tmp_path):
    r = run_cli("pack", tmp_path / "nothing", tmp_path / "out")
    assert r.returncode == 1 and "does not exist" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_cli("pack", tmp_path / "empty", tmp_path / "out")
    assert r.returncode == 1 and "cannot tell the dataset layout" in r.stderr
    _jpeg(tmp_path / "flat" / "a.jpg")
    _jpeg(tmp_path / "flat" / "b.jpg")
    r = run_cli("pack", tmp_path / "flat", tmp_path / "out")
    assert r.returncode == 1 and "holds 2 image(s) but no class folders or annotations" in r.stderr


@pytest.mark.parametrize("fmt, input_name, message", [
    ("coco", "in", "--format coco reads a COCO .json file"),
    ("csv", "in", "--format csv reads a .csv file of boxes"),
    ("manifest", "in", "--format manifest reads a Ground Truth .manifest file"),
    ("voc", "noise.csv", "--format voc reads a folder"),
    ("auto", "noise.csv", "is not a UTF-8 text file"),
    ("manifest", "noise.csv", "holds no line with a Ground Truth"),
])
def test_input_that_does_not_fit_the_format(tmp_path, fmt, input_name, message):
    _classes(tmp_path)
    (tmp_path / "noise.csv").write_bytes(bytes(range(256)) * 4)
    r = run_cli("pack", tmp_path / input_name, tmp_path / "out", "--format", fmt)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_missing_or_binary_class_list(tmp_path):
    root = _classes(tmp_path)
    r = run_cli("pack", root, tmp_path / "out", "--classes", tmp_path / "nothere.txt")
    assert r.returncode == 1 and "class list" in r.stderr and "does not exist" in r.stderr
    (tmp_path / "binary.txt").write_bytes(bytes(range(128, 256)))
    r = run_cli("pack", root, tmp_path / "out", "--classes", tmp_path / "binary.txt")
    assert r.returncode == 1 and "cannot be read as text" in r.stderr and "Traceback" not in r.stderr


def test_single_class_classification_is_fatal(tmp_path):
    root = _classes(tmp_path, n=1)
    with pytest.raises(DataError, match="at least 2 classes"):
        pack(root, tmp_path / "out", progress=False)


def test_too_few_images_to_split(tmp_path):
    root = _classes(tmp_path, n=2, per=1)
    with pytest.raises(DataError, match="--val-fraction 0"):
        pack(root, tmp_path / "out", val_fraction=0.2, progress=False)


def _rotated_jpeg(path, size=(60, 40)):
    """A landscape file whose EXIF says 'rotate 90° clockwise to view' (orientation 6)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, "JPEG", exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied_like_opencv(tmp_path):
    root = _classes(tmp_path)
    _rotated_jpeg(root / "class0" / "phone.jpg")
    pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    sizes = {Image.open(io.BytesIO(d)).size for _, d in read_all(tmp_path / "out" / "train.rec")}
    assert (40, 60) in sizes  # portrait, as a viewer shows it


def test_exif_orientation_follows_the_annotation_frame(tmp_path):
    root = tmp_path / "voc"
    _rotated_jpeg(root / "images" / "up.jpg")
    _rotated_jpeg(root / "images" / "raw.jpg").write_bytes((root / "images" / "up.jpg").read_bytes() + b"\0")
    (root / "annotations").mkdir()
    voc.write(root / "annotations" / "up.xml", "up.jpg", 40, 60, [("card", 0, 0, 40, 30)])   # drawn upright
    voc.write(root / "annotations" / "raw.xml", "raw.jpg", 60, 40, [("card", 0, 0, 30, 40)])  # drawn on raw pixels
    pack(root, tmp_path / "out", val_fraction=0, workers=1, progress=False)
    rows = {}
    for header, data in read_all(tmp_path / "out" / "train.rec"):
        img = np.asarray(Image.open(io.BytesIO(data)))
        x0, y0, x1, y1 = np.asarray(header.label)[5:9]
        h, w = img.shape[:2]
        inside = img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].reshape(-1, 3).mean(axis=0)
        rows[(w, h)] = inside
    assert set(rows) == {(40, 60), (60, 40)}
    for colour in rows.values():
        assert colour[0] > 200 and colour[2] < 60  # the box covers the red half in both frames
