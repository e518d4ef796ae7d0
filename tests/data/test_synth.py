import hashlib
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from magiccards.data import cards
from magiccards.data.synth import synth
from PIL import Image

from magiccards.errors import UserError

from ..helpers import run_cli


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def test_classification_writes_class_folders(card_folders):
    folders = sorted(p.name for p in card_folders.iterdir() if p.is_dir())
    assert folders == sorted(cards.class_names(4))
    assert (card_folders / "classes.txt").read_text().split() == cards.class_names(4)  # the class order
    for folder in (p for p in card_folders.iterdir() if p.is_dir()):
        files = list(folder.glob("*.jpg"))
        assert len(files) == 10
        assert Image.open(files[0]).size == (96, 96)
    assert not list(card_folders.rglob(".*.tmp"))


def test_deterministic_for_seed_and_independent_of_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synth(a, count=12, classes=3, size=64, seed=9, workers=1, progress=False)
    synth(b, count=12, classes=3, size=64, seed=9, workers=2, progress=False)
    synth(c, count=12, classes=3, size=64, seed=10, workers=2, progress=False)
    assert _digests(a) == _digests(b)
    assert _digests(a).keys() == _digests(c).keys()
    assert set(_digests(a).values()).isdisjoint(_digests(c).values())


def test_class_look_depends_on_name_only():
    assert np.array_equal(cards.render("ember-drake"), cards.render("ember-drake"))
    faces = [cards.render(n)[..., :3].astype(int) for n in cards.class_names(8)]
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            assert np.abs(faces[i] - faces[j]).mean() > 20, "two classes look alike"


def test_detection_writes_voc_and_classes(card_scenes):
    assert (card_scenes / "classes.txt").read_text().split() == cards.class_names(3)
    xmls = sorted((card_scenes / "annotations").glob("*.xml"))
    assert len(xmls) == 12 == len(list((card_scenes / "images").glob("*.jpg")))
    objects = 0
    for x in xmls:
        root = ET.parse(x).getroot()
        assert (card_scenes / "images" / root.findtext("filename")).is_file()
        for obj in root.iter("object"):
            objects += 1
            assert obj.findtext("name") in cards.class_names(3)
            x0, y0, x1, y1 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 160
            assert (x1 - x0) * (y1 - y0) > 0.02 * 160 * 160
    assert objects >= 12


def test_named_classes_and_photo_backgrounds(tmp_path, raccoon):
    r = synth(tmp_path, count=4, classes=["ace", "king"], size=80, backgrounds=raccoon / "images",
              seed=1, workers=1, progress=False)
    assert r.classes == ["ace", "king"] and r.images == 4
    assert len(list((tmp_path / "ace").glob("*.jpg"))) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(count=0), "--count"),
    (dict(size=8), "--size"),
    (dict(classes=["solo"]), "at least 2"),
    (dict(classes=["a", "a"]), "'a' appear more than once"),
    (dict(classes=["a", " "]), "class 1 has an empty name"),
    (dict(task="segmentation"), "--task"),
    (dict(backgrounds="/nonexistent"), "--backgrounds"),
])
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        synth(tmp_path, progress=False, **kwargs)


def test_cli_reports_bad_argument(tmp_path):
    r = run_cli("synth", tmp_path, "--count", "0")
    assert r.returncode == 1
    assert "error: --count must be at least 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_playing_cards_backs_and_magic_faces_render_differently():
    from magiccards.data import cards

    names = ["queen-of-hearts", "nine-of-hearts", "9-of-clubs", "ace-of-spades", "back-1", "back-2", "ember-drake"]
    faces = {n: cards.render(n) for n in names}
    for face in faces.values():
        assert face.shape == (cards.CARD_H, cards.CARD_W, 4)
    assert np.array_equal(faces["nine-of-hearts"], cards.render("9-of-hearts"))  # 'nine' is the rank 9
    assert len({f.tobytes() for f in faces.values()}) == len(names)
    white = [n for n in names if faces[n][cards.CARD_H // 2, 10, :3].min() > 230]  # the playing cards' white face
    assert set(white) >= {"queen-of-hearts", "9-of-clubs", "ace-of-spades"} and "ember-drake" not in white
    assert len(cards.playing_card_names()) == 52 and len(set(cards.base_classes())) == 100


def test_fans_overlap_cards_down_to_a_strip(tmp_path):
    synth(tmp_path / "fans", task="detection", count=12, classes=["ace-of-spades", "back-1"], size=256, fans=1.0,
          seed=5, workers=1, progress=False)
    synth(tmp_path / "plain", task="detection", count=12, classes=["ace-of-spades", "back-1"], size=256, seed=5,
          workers=1, progress=False)

    def overlaps(folder):
        count = 0
        for xml in sorted((folder / "annotations").glob("*.xml")):
            boxes = [[int(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
                     for o in ET.parse(xml).findall("object")]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    w = min(a[2], b[2]) - max(a[0], b[0])
                    h = min(a[3], b[3]) - max(a[1], b[1])
                    count += w > 0 and h > 0
        return count
    assert overlaps(tmp_path / "fans") > 2 * overlaps(tmp_path / "plain")
    with pytest.raises(UserError, match="--fans is a probability"):
        synth(tmp_path / "bad", task="detection", count=1, fans=2.0, progress=False)
