"""Class names can never shift labels: names are cleaned where they enter, bad class lists are refused."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from magiccards.data.pack import pack
from magiccards.data.samples import (
    check_class_names,
    clean_class_name,
    read_classes,
    write_classes,
)
from PIL import Image

from magiccards.errors import DataError

from ..helpers import labels_of, read_all, run_cli

NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=8))
def test_any_names_round_trip_through_classes_txt(tmp_path_factory, names):
    cleaned = [clean_class_name(n) for n in names]
    if "" in cleaned or len(set(cleaned)) < len(cleaned):
        with pytest.raises(DataError):
            check_class_names(names, "test")
        return
    path = tmp_path_factory.mktemp("classes") / "classes.txt"
    write_classes(path, check_class_names(names, "test"))
    assert read_classes(path) == cleaned
    assert len(path.read_text().splitlines()) == len(cleaned)  # one line per class, whatever the name


def _coco(tmp_path, categories, boxes_per_image):
    images = tmp_path / "images"
    images.mkdir()
    doc = {"images": [], "annotations": [], "categories": categories}
    for i, boxes in enumerate(boxes_per_image):
        Image.new("RGB", (64, 48), (40 * i % 255, 90, 140)).save(images / f"im{i}.jpg")
        doc["images"].append({"id": i, "file_name": f"im{i}.jpg", "width": 64, "height": 48})
        for cat, box in boxes:
            doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": cat, "bbox": box})
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    return tmp_path / "instances.json", images


@settings(max_examples=15, deadline=None)
@given(st.lists(NAMES, min_size=2, max_size=5, unique_by=clean_class_name).filter(
    lambda names: all(clean_class_name(n) for n in names)))
def test_indices_survive_pack_end_to_end(tmp_path_factory, names):
    tmp_path = tmp_path_factory.mktemp("coco")
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    boxes = [[(1 + (i + k) % len(names), [4 + 6 * k, 4, 10, 12]) for k in range(2)] for i in range(len(names))]
    annotation, images = _coco(tmp_path, categories, boxes)
    r = pack(annotation, tmp_path / "rec", images=images, val_fraction=0, workers=1, progress=False, log=lambda *a: None)
    classes = read_classes(tmp_path / "rec" / "classes.txt")
    assert classes == [clean_class_name(n) for n in names]
    for n, (header, _) in enumerate(read_all(tmp_path / "rec" / "train.rec")):
        label = labels_of(header)
        got = sorted(classes[int(c)] for c in label[4::5])
        image = int(r.out_dir.joinpath("train.lst").read_text().splitlines()[n].split("\t")[-1].split("/im")[-1][:-4])
        assert got == sorted(clean_class_name(names[cat - 1]) for cat, _ in boxes[image])


def test_a_category_with_a_line_break_is_cleaned_and_reported(tmp_path):
    annotation, images = _coco(tmp_path, [{"id": 1, "name": "red\nfox"}, {"id": 2, "name": "fox"}],
                               [[(1, [2, 2, 20, 20])], [(2, [2, 2, 20, 20])], [(1, [5, 5, 20, 20])]])
    r = pack(annotation, tmp_path / "rec", images=images, val_fraction=0, workers=1, progress=False, log=lambda *a: None)
    assert (tmp_path / "rec" / "classes.txt").read_text() == "red fox\nfox\n"
    report = json.loads((tmp_path / "rec" / "pack-report.json").read_text())
    changed = [p for p in report["problems"] if p["kind"] == "class name changed"]
    assert len(changed) == 1 and "replaced by a space: 'red fox'" in changed[0]["reason"]
    assert r.counts["train"] == {"red fox": 2, "fox": 1}


def test_a_voc_name_spanning_two_lines_and_an_empty_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    for i, names in enumerate([["ace\n  of spades"], ["", "king"], ["king"]]):
        Image.new("RGB", (64, 48), (60 * i, 20, 200)).save(tmp_path / "images" / f"p{i}.jpg")
        objects = "".join(f"<object><name>{n}</name><bndbox><xmin>{2 + 20 * k}</xmin><ymin>2</ymin>"
                          f"<xmax>{18 + 20 * k}</xmax><ymax>30</ymax></bndbox></object>" for k, n in enumerate(names))
        (tmp_path / "annotations" / f"p{i}.xml").write_text(
            f"<annotation><filename>p{i}.jpg</filename><size><width>64</width><height>48</height></size>{objects}"
            "</annotation>")
    r = pack(tmp_path, tmp_path / "rec", val_fraction=0, workers=1, progress=False, log=lambda *a: None)
    assert r.classes == ["ace of spades", "king"]
    assert r.problems.get("empty class name") == 1 and r.problems.get("class name changed") == 1
    assert r.counts["train"] == {"ace of spades": 1, "king": 2}


def test_an_empty_class_in_a_csv_row_is_skipped_and_counted(tmp_path):
    for i in range(2):
        Image.new("RGB", (64, 48), (60 * i, 20, 200)).save(tmp_path / f"c{i}.jpg")
    (tmp_path / "boxes.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                        "c0.jpg,64,48,card,2,2,20,20\nc0.jpg,64,48,,30,2,50,20\n"
                                        "c1.jpg,64,48,card,2,2,20,20\n")
    r = pack(tmp_path / "boxes.csv", tmp_path / "rec", val_fraction=0, workers=1, progress=False, log=lambda *a: None)
    assert r.classes == ["card"] and r.problems.get("empty class name") == 1 and r.counts["train"] == {"card": 2}


@pytest.mark.parametrize("text, message", [
    ("ace\n\nking\n", "line 2 is empty"),
    ("ace\nking\nace\n", "'ace' appear more than once"),
])
def test_a_class_list_that_would_shift_indices_is_refused(tmp_path, card_folders, text, message):
    (tmp_path / "classes.txt").write_text(text)
    r = run_cli("pack", card_folders, tmp_path / "rec", "--classes", tmp_path / "classes.txt")
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "rec").exists()
    assert read_classes_ok(tmp_path, "ace\nking\n\n\n") == ["ace", "king"]  # trailing blank lines are fine


def read_classes_ok(tmp_path, text):
    (tmp_path / "ok.txt").write_text(text)
    return read_classes(tmp_path / "ok.txt")


@pytest.mark.parametrize("classes, message", [("a,,b", "class 1 has an empty name"), ("a,b,a", "'a' appear more than once")])
def test_synth_refuses_class_lists_that_would_shift(tmp_path, classes, message):
    r = run_cli("synth", tmp_path / "out", "--classes", classes, "--count", "2")
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
